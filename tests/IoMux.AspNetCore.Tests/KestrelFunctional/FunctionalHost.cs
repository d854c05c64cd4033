using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using IoMux.AspNetCore;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace IoMux.Tests.AspNetCore;

/// <summary>The transports Kestrel's functional tests are restated on: Kestrel's socket transport (the reference, as
/// aspnetcore runs them per transport through its TransportSelector) and IoMux on epoll with either scheduling (the
/// inline one runs Kestrel on the loop: another path through every receive and flush). The other backends run the
/// transport's own suite (TransportTests); with poll too this fixture passed (164 of 164) but took 80 s, not 60.</summary>
public static class FunctionalTargets
{
    public static IEnumerable<TransportTarget> All() =>
        TransportTarget.All().Where(t => t.Name is "kestrel-sockets" or "epoll" or "epoll-inline");
}

/// <summary>One log line a host wrote, with its category and event, for the tests that check what the transport and
/// Kestrel log (Kestrel's tests read the same through their TestSink).</summary>
public sealed record LogLine(string Category, LogLevel Level, EventId Event, string Message)
{
    /// <summary>The transport's own categories: Kestrel's socket transport or IoMux's.</summary>
    public bool IsTransport => Category.StartsWith("Microsoft.AspNetCore.Server.Kestrel.Transport", StringComparison.Ordinal)
        || Category.StartsWith("IoMux.AspNetCore", StringComparison.Ordinal);

    /// <summary>Kestrel's core categories (Microsoft.AspNetCore.Server.Kestrel and its .Connections, .BadRequests…).</summary>
    public bool IsKestrelCore => Category.StartsWith("Microsoft.AspNetCore.Server.Kestrel", StringComparison.Ordinal) && !IsTransport;

    public override string ToString() => $"{Level} {Category}[{Event.Name}] {Message}";
}

/// <summary>
/// A WebApplication on the transport under test whose request handler a test sets (<see cref="Handler"/>), so one
/// host serves a fixture's tests as aspnetcore's TestServer serves each of theirs; its logs (Debug and up) are kept.
/// </summary>
public sealed class FunctionalHost : IAsyncDisposable
{
    private WebApplication _app = null!;
    private ConcurrentQueue<LogLine> _logs = new();
    private readonly Dictionary<string, ListenOptions> _listeners = [];

    private FunctionalHost()
    {
    }

    /// <summary>What the next requests run (tests of one fixture run one at a time).</summary>
    public volatile RequestDelegate Handler = _ => Task.CompletedTask;

    public IServiceProvider Services => _app.Services;

    /// <summary>Starts a host. <paramref name="listen"/> names its listeners (<see cref="Listen"/>); both transports get
    /// the same read and write buffer limits (null: unbounded).</summary>
    public static async Task<FunctionalHost> StartAsync(TransportTarget target, Action<FunctionalHost, KestrelServerOptions> listen,
        long? maxReadBufferSize = 1024 * 1024, long? maxWriteBufferSize = 64 * 1024)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Debug);
        var host = new FunctionalHost();
        builder.Logging.AddProvider(new Provider(host));
        builder.Services.Configure<SocketTransportOptions>(o =>
        {
            o.MaxReadBufferSize = maxReadBufferSize;
            o.MaxWriteBufferSize = maxWriteBufferSize;
        });
        builder.WebHost.ConfigureKestrel(o =>
        {
            o.AddServerHeader = false;
            o.Limits.MaxRequestBodySize = null;
            listen(host, o);
        });
        if (target.Backend is { } backend)
        {
            builder.WebHost.UseIoMux(o =>
            {
                o.ThreadCount = 2;
                o.PollerOverride = () => new Poller(backend.Create());
                o.Scheduling = target.Scheduling;
                o.MaxReadBufferSize = maxReadBufferSize;
                o.MaxWriteBufferSize = maxWriteBufferSize;
            });
        }
        var app = builder.Build();
        host._app = app;
        app.Run(ctx => host.Handler(ctx));
        await app.StartAsync();
        return host;
    }

    /// <summary>In the listen callback: a listener on <paramref name="address"/> port 0 named <paramref name="name"/>.</summary>
    public void Listen(KestrelServerOptions options, string name, IPAddress address, Action<ListenOptions>? configure = null) =>
        options.Listen(address, 0, l =>
        {
            configure?.Invoke(l);
            _listeners[name] = l;
        });

    /// <summary>The port Kestrel bound for the listener <paramref name="name"/> (Kestrel writes the bound endpoint back).</summary>
    public int Port(string name = "http") => ((IPEndPoint)_listeners[name].EndPoint).Port;

    /// <summary>Forgets the logs so far: a test reads only its own.</summary>
    public void ClearLogs() => _logs = new ConcurrentQueue<LogLine>();

    public IReadOnlyList<LogLine> Logs => _logs.ToArray();

    /// <summary>Waits (bounded) for a log line matching <paramref name="match"/>.</summary>
    public async Task<LogLine> WaitForLogAsync(Func<LogLine, bool> match, string what, CancellationToken token, double seconds = 10)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            if (_logs.FirstOrDefault(match) is { } line)
                return line;
            await Task.Delay(10, token);
        }
        Assert.Fail($"no log line {what} within {seconds} s; the host logged:\n{string.Join("\n", Logs.TakeLast(30))}");
        throw new UnreachableException();
    }

    public Task StopAsync(CancellationToken token) => _app.StopAsync(token);

    public async ValueTask DisposeAsync()
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await _app.StopAsync(stop.Token);
        await _app.DisposeAsync();
    }

    private sealed class Provider(FunctionalHost host) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Sink(host, categoryName);
        public void Dispose() { }
    }

    private sealed class Sink(FunctionalHost host, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            host._logs.Enqueue(new LogLine(category, logLevel, eventId, formatter(state, exception)));
    }
}

/// <summary>
/// A raw TCP client, as aspnetcore's TestConnection: what it sends is bytes on the wire, and what it sees is too, down
/// to how the connection ended (the server's FIN or its RST). Every read has a deadline.
/// </summary>
public sealed class RawClient : IDisposable
{
    private readonly byte[] _buffer = new byte[64 * 1024];
    private readonly StringBuilder _received = new();

    private RawClient(Socket socket) => Socket = socket;

    public Socket Socket { get; }

    /// <summary>Everything received so far (Latin-1).</summary>
    public string Received => _received.ToString();

    public static async Task<RawClient> ConnectAsync(int port, CancellationToken token, IPAddress? address = null, int? sendBufferSize = null)
    {
        address ??= IPAddress.Loopback;
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        if (sendBufferSize is { } size)
            socket.SendBufferSize = size;
        await socket.ConnectAsync(new IPEndPoint(address, port), token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), token);
        return new RawClient(socket);
    }

    /// <summary>Sends lines joined by CRLF, as TestConnection.Send does (the last one without its CRLF).</summary>
    public Task SendAsync(CancellationToken token, params string[] lines) => SendAsync(Encoding.ASCII.GetBytes(string.Join("\r\n", lines)), token);

    public async Task SendAsync(ReadOnlyMemory<byte> bytes, CancellationToken token) =>
        await Socket.SendAsync(bytes, SocketFlags.None, token).AsTask().WaitAsync(TimeSpan.FromSeconds(30), token);

    /// <summary>Reads until what was received contains <paramref name="expected"/>; fails on the end of the stream
    /// or after <paramref name="seconds"/>.</summary>
    public Task<string> ReceiveAsync(string expected, CancellationToken token, double seconds = 10) =>
        ReceiveAsync(expected, 1, token, seconds);

    /// <summary>Reads until what was received contains <paramref name="expected"/> <paramref name="times"/> times.</summary>
    public async Task<string> ReceiveAsync(string expected, int times, CancellationToken token, double seconds = 10)
    {
        var deadline = Stopwatch.StartNew();
        while (Occurrences(_received.ToString(), expected) < times)
        {
            int n = await ReadAsync(deadline, seconds, () => $"did not receive \"{expected}\" within {seconds} s; received: \"{Received}\"", token);
            if (n <= 0)
                Assert.Fail($"the connection ended ({(n == 0 ? "FIN" : "RST")}) before \"{expected}\"; received: \"{Received}\"");
            _received.Append(Encoding.Latin1.GetString(_buffer, 0, n));
        }
        return Received;
    }

    /// <summary>Reads to the end of the stream: "FIN" when the server ended it in order, "RST" when it reset it.
    /// Fails after <paramref name="seconds"/> (the server never ended the connection).</summary>
    public async Task<string> ReadToEndAsync(CancellationToken token, double seconds = 10)
    {
        var deadline = Stopwatch.StartNew();
        for (int n; (n = await ReadAsync(deadline, seconds, () => $"the server did not end the connection within {seconds} s; received: \"{Tail()}\"", token)) > 0;)
            _received.Append(Encoding.Latin1.GetString(_buffer, 0, n));
        return _lastEnd;
    }

    /// <summary>Counts the bytes of the stream to its end without keeping them: (bytes, "FIN" or "RST").</summary>
    public async Task<(long Bytes, string End)> DrainAsync(CancellationToken token, double seconds = 30)
    {
        long total = 0;
        var deadline = Stopwatch.StartNew();
        for (int n; (n = await ReadAsync(deadline, seconds, () => $"the stream did not end within {seconds} s ({total} bytes)", token)) > 0;)
            total += n;
        return (total, _lastEnd);
    }

    private string _lastEnd = "";

    /// <summary>One receive within what is left of <paramref name="seconds"/>: the bytes read, 0 at the server's FIN,
    /// -1 at its reset (<see cref="_lastEnd"/> says which); a test failure past the deadline.</summary>
    private async Task<int> ReadAsync(Stopwatch deadline, double seconds, Func<string> late, CancellationToken token)
    {
        var left = TimeSpan.FromSeconds(seconds) - deadline.Elapsed;
        if (left <= TimeSpan.Zero)
            Assert.Fail(late());
        try
        {
            int n = await Socket.ReceiveAsync(_buffer.AsMemory(), SocketFlags.None, token).AsTask().WaitAsync(left, token);
            if (n == 0)
                _lastEnd = "FIN";
            return n;
        }
        catch (TimeoutException)
        {
            Assert.Fail(late());
            throw;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
        {
            _lastEnd = "RST";
            return -1;
        }
    }

    private static int Occurrences(string text, string part)
    {
        int count = 0;
        for (int at = text.IndexOf(part, StringComparison.Ordinal); at >= 0; at = text.IndexOf(part, at + part.Length, StringComparison.Ordinal))
            count++;
        return count;
    }

    private string Tail() => Received.Length > 300 ? Received[^300..] : Received;

    /// <summary>Ends the connection with a reset (SO_LINGER 0), as TestConnection.Reset.</summary>
    public void Reset()
    {
        Socket.LingerState = new LingerOption(true, 0);
        Socket.Close();
    }

    public void Dispose() => Socket.Dispose();
}
