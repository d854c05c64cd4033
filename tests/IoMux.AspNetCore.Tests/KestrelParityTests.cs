using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using IoMux.AspNetCore;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace IoMux.Tests.AspNetCore;

/// <summary>
/// What a team replacing Transport.Sockets with UseIoMux() expects to stay as it was (issue 23): each test runs the
/// same assertion on Kestrel's socket transport ("kestrel-sockets", the reference) and on the IoMux transport.
/// </summary>
[TestFixtureSource(typeof(TransportTarget), nameof(TransportTarget.All))]
[NonParallelizable]
public sealed class KestrelParityTests(TransportTarget target)
{
    /// <summary>How soon after the client left its request must see RequestAborted.</summary>
    private static readonly TimeSpan AbortedWithin = TimeSpan.FromSeconds(1);

    [OneTimeSetUp]
    public void Supported()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
    }

    // --- RequestAborted when the client leaves (Kestrel's SocketConnection fires ConnectionClosed from its receive
    // loop on FIN or RST; Kestrel turns that into HttpContext.RequestAborted) ---

    [Test, CancelAfter(30_000)]
    public async Task RequestAbortedFiresWhenTheClientSendsFin(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using var socket = await SendWaitRequestAsync(app, token);
        long left = Stopwatch.GetTimestamp(); // before: the server may see the FIN before Shutdown returns
        socket.Shutdown(SocketShutdown.Send); // the client is done: FIN
        await AssertAbortedWithinAsync(app, left, "FIN", token);
    }

    [Test, CancelAfter(30_000)]
    public async Task RequestAbortedFiresWhenTheClientResets(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        var socket = await SendWaitRequestAsync(app, token);
        socket.LingerState = new LingerOption(true, 0);
        long left = Stopwatch.GetTimestamp();
        socket.Close(); // SO_LINGER 0: RST
        await AssertAbortedWithinAsync(app, left, "RST", token);
    }

    private static async Task<Socket> SendWaitRequestAsync(TestApp app, CancellationToken token)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        await socket.SendAsync(Encoding.ASCII.GetBytes("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"), token);
        await app.WaitStarted.Task.WaitAsync(TimeSpan.FromSeconds(10), token);
        return socket;
    }

    private async Task AssertAbortedWithinAsync(TestApp app, long left, string how, CancellationToken token)
    {
        long aborted;
        try
        {
            // Well past the bound, so a late cancellation is measured rather than a timeout reported.
            aborted = await app.WaitAborted.Task.WaitAsync(TimeSpan.FromSeconds(10), token);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"RequestAborted did not fire within 10 s of the client's {how}");
            return;
        }
        var after = Stopwatch.GetElapsedTime(left, aborted);
        TestContext.Out.WriteLine($"RequestAborted on {target}: {after.TotalMilliseconds:F1} ms after the client's {how}");
        Assert.That(after, Is.LessThan(AbortedWithin), $"RequestAborted fired {after.TotalMilliseconds:F0} ms after the client's {how}");
    }

    // --- A held port (Kestrel fails the second app with AddressInUseException) ---

    [Test, CancelAfter(60_000)]
    public async Task ASecondAppOnAHeldPortFailsWithAddressInUse(CancellationToken token)
    {
        await using var first = await TestApp.StartAsync(target);
        int port = first.Port;
        Exception? failure = null;
        try
        {
            await using var second = await TestApp.StartAsync(target, o => o.Listen(IPAddress.Loopback, port));
        }
        catch (Exception e)
        {
            failure = e;
        }
        Assert.That(failure, Is.Not.Null, $"a second app started on {port}, held by the first");
        Assert.That(Chain(failure!).OfType<AddressInUseException>(), Is.Not.Empty,
            $"Kestrel's AddressInUseException somewhere in: {string.Join(" <- ", Chain(failure!).Select(e => e.GetType().Name))}");
        // The first app still has every connection (no silent share with a group the second one joined).
        using var client = new HttpClient { BaseAddress = first.BaseAddress };
        for (int i = 0; i < 8; i++)
            Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello));
    }

    [Test, CancelAfter(60_000)]
    public async Task ARestartBindsThePortAgainWhileItsClosedConnectionsWaitInTimeWait(CancellationToken token)
    {
        // The server closes first ("Connection: close"), so its side of each connection waits in TIME_WAIT: a
        // restart must bind over them (SO_REUSEADDR), as it does on Kestrel's sockets.
        int port;
        await using (var app = await TestApp.StartAsync(target))
        {
            port = app.Port;
            for (int i = 0; i < 4; i++)
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(IPAddress.Loopback, port, token);
                await socket.SendAsync(Encoding.ASCII.GetBytes("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), token);
                Assert.That(await ReadToEndAsync(socket, token), Does.EndWith("Hello, World!"));
            }
        }
        await using var again = await TestApp.StartAsync(target, o => o.Listen(IPAddress.Loopback, port));
        using var client = new HttpClient { BaseAddress = again.BaseAddress };
        Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello));
    }

    // --- Connection IDs ---

    [Test, CancelAfter(60_000)]
    public async Task ConnectionIdsAreUniqueAcrossListenersAndRestarts(CancellationToken token)
    {
        var ids = new List<string>();
        for (int run = 0; run < 2; run++)
        {
            await using var app = await TestApp.StartAsync(target, o =>
            {
                o.Listen(IPAddress.Loopback, 0);
                o.Listen(IPAddress.Loopback, 0);
            });
            var ports = app.Addresses.Select(a => new Uri(a).Port).ToArray();
            Assert.That(ports, Has.Length.EqualTo(2));
            foreach (int port in ports)
            {
                for (int i = 0; i < 3; i++)
                {
                    using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                    await socket.ConnectAsync(IPAddress.Loopback, port, token);
                    await socket.SendAsync(Encoding.ASCII.GetBytes("GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), token);
                    var text = await ReadToEndAsync(socket, token);
                    ids.Add(text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..].Split(' ')[2]);
                }
            }
        }
        Assert.That(ids, Has.Count.EqualTo(12));
        Assert.That(ids, Is.Unique, $"connection ids over two listeners and a restart: {string.Join(", ", ids)}");
    }

    // --- The features apps use ---

    [Test, CancelAfter(60_000)]
    public async Task TheSocketFeatureGivesTheConnectionsSocket(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        await socket.SendAsync(Encoding.ASCII.GetBytes("GET /socket HTTP/1.0\r\nHost: x\r\n\r\n"), token);
        var text = await ReadToEndAsync(socket, token);
        var body = text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        Assert.That(body, Is.EqualTo($"{socket.LocalEndPoint} 127.0.0.1:{app.Port} nodelay=True"),
            "IConnectionSocketFeature: the accepted socket (remote, local), TCP_NODELAY on by default");
    }

    [Test, CancelAfter(60_000)]
    public async Task NoDelayCanBeSwitchedOff(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target, transport: o => o.NoDelay = false, sockets: o => o.NoDelay = false);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        await socket.SendAsync(Encoding.ASCII.GetBytes("GET /socket HTTP/1.0\r\nHost: x\r\n\r\n"), token);
        Assert.That(await ReadToEndAsync(socket, token), Does.EndWith(" nodelay=False"));
    }

    [Test, CancelAfter(60_000)]
    public async Task AListeningHandleFromTheHostStaysOpenAfterTheAppStops(CancellationToken token)
    {
        // Kestrel takes a ListenHandle with ownsHandle: false: the host (systemd, a supervisor) still owns it.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        await using (var app = await TestApp.StartAsync(target, o => o.ListenHandle((ulong)listener.Handle)))
        {
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello));
        }
        Assert.That(Interop.LibC.fcntl((int)listener.Handle, 1 /* F_GETFD */, 0), Is.GreaterThanOrEqualTo(0), "the handle is still open");
        // Still listening: a new connection queues on it, and the host accepts it (poll(2) first: a deadline).
        using var late = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await late.ConnectAsync(IPAddress.Loopback, port, token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), token);
        Assert.That(listener.Poll(TimeSpan.FromSeconds(10), SelectMode.SelectRead), Is.True, "the connection is queued on the host's listener");
    }

    [Test, CancelAfter(60_000)]
    public async Task AUnixSocketFromTheHostKeepsItsFileAfterTheAppStops(CancellationToken token)
    {
        // A socket unit's path belongs to the service manager (systemd binds it and passes the handle): the app must
        // not delete it when it stops, or the next start of the service finds no socket.
        string path = Path.Combine(Path.GetTempPath(), $"iomux-parity-{Guid.NewGuid():N}.sock");
        try
        {
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(16);
            await using (var app = await TestApp.StartAsync(target, o => o.ListenHandle((ulong)listener.Handle)))
            {
                using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await client.ConnectAsync(new UnixDomainSocketEndPoint(path), token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), token);
                await client.SendAsync(Encoding.ASCII.GetBytes("GET /hello HTTP/1.0\r\nHost: x\r\n\r\n"), token);
                Assert.That(await ReadToEndAsync(client, token), Does.StartWith("HTTP/1.1 200"));
            }
            Assert.That(File.Exists(path), Is.True, "the host's socket file is still there after the app stopped");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task AbortResetsTheConnection(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        Assert.That(await AbortOutcomeAsync(app, token), Is.EqualTo("RST"), "HttpContext.Abort(): the client sees a reset");
    }

    [Test, CancelAfter(60_000)]
    public async Task TheFinOnErrorSwitchMakesAbortSendFin(CancellationToken token)
    {
        // The opt-out Kestrel documents: the AppContext switch Microsoft.AspNetCore.Server.Kestrel.FinOnError. Kestrel
        // reads it once per process (a static constructor that may have run already here), so its reference run sets
        // the internal option the switch sets, as Kestrel's own functional tests do (FinOnErrorHelpers); the IoMux
        // transport reads the switch when its options are made.
        AppContext.SetSwitch(FinOnErrorSwitch, true);
        try
        {
            await using var app = await TestApp.StartAsync(target,
                sockets: o => typeof(SocketTransportOptions).GetProperty("FinOnError", BindingFlags.Instance | BindingFlags.NonPublic)!.SetValue(o, true));
            Assert.That(await AbortOutcomeAsync(app, token), Is.EqualTo("FIN"), "with the switch the client sees an orderly end");
        }
        finally
        {
            AppContext.SetSwitch(FinOnErrorSwitch, false);
        }
    }

    private const string FinOnErrorSwitch = "Microsoft.AspNetCore.Server.Kestrel.FinOnError";

    [Test, CancelAfter(60_000)]
    public async Task AClientThatHalfClosesSeesAnOrderlyEndNotAReset(CancellationToken token)
    {
        // Kestrel ends a connection whose client sent FIN with Abort(null) (Http1Connection.OnInputOrOutputCompleted
        // without FinOnError), and SocketConnection.Shutdown resets only for a non-null reason: the client gets a FIN,
        // after whatever the response got out. A 1 MiB response is still being sent when the FIN is seen.
        for (int round = 0; round < 3; round++)
        {
            await using var app = await TestApp.StartAsync(target);
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
            await socket.SendAsync(Encoding.ASCII.GetBytes("GET /bytes/1048576 HTTP/1.1\r\nHost: x\r\n\r\n"), token);
            socket.Shutdown(SocketShutdown.Send);
            try
            {
                await ReadToEndAsync(socket, token);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
            {
                Assert.Fail($"round {round}: the client saw a reset where Kestrel's socket transport ends with a FIN");
            }
        }
    }

    /// <summary>"RST" or "FIN": how the connection of a request the app aborts ends for the client.</summary>
    private static async Task<string> AbortOutcomeAsync(TestApp app, CancellationToken token)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        await socket.SendAsync(Encoding.ASCII.GetBytes("GET /abort HTTP/1.1\r\nHost: x\r\n\r\n"), token);
        try
        {
            string text = await ReadToEndAsync(socket, token);
            return text.Length == 0 ? "FIN" : $"FIN after {text.Length} bytes";
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return "RST";
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task ANegativeBufferSizeFailsTheStartNotEachConnection(CancellationToken token)
    {
        Exception? failure = null;
        try
        {
            await using var app = await TestApp.StartAsync(target, transport: o => o.MaxReadBufferSize = -2, sockets: o => o.MaxReadBufferSize = -2);
            // Kestrel's socket transport makes its connections' pipe options when it binds: if it ever stopped
            // doing so, a connection is where it would fail.
            using var client = new HttpClient { BaseAddress = app.BaseAddress };
            await client.GetByteArrayAsync("/hello", token);
        }
        catch (Exception e)
        {
            failure = e;
        }
        Assert.That(failure, Is.Not.Null.And.Not.InstanceOf<HttpRequestException>(), "the host did not start");
        if (target.Backend is not null)
        {
            Assert.That(failure, Is.InstanceOf<OptionsValidationException>());
            Assert.That(failure!.Message, Does.Contain("MaxReadBufferSize"));
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task TheTransportLogsPauseResumeAndFinAtDebug(CancellationToken token)
    {
        // A connection handler that reads nothing at first: the transport pauses at MaxReadBufferSize, resumes when
        // the handler reads, and sees the client's FIN; Kestrel's socket transport logs each at Debug (SocketsLog).
        var logs = new ListLogger();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var app = await TestApp.StartAsync(target, o => o.Listen(IPAddress.Loopback, 0, l => l.Run(async connection =>
        {
            await release.Task;
            while (true)
            {
                var result = await connection.Transport.Input.ReadAsync();
                connection.Transport.Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                    break;
            }
            await connection.Transport.Output.CompleteAsync();
        })), logs: logs, transport: o => o.MaxReadBufferSize = 64 * 1024, sockets: o => o.MaxReadBufferSize = 64 * 1024);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        var sending = socket.SendAsync(TestApp.Pattern(1 << 20), token).AsTask();
        await Task.Delay(300, token);
        release.SetResult();
        await sending.WaitAsync(TimeSpan.FromSeconds(30), token);
        socket.Shutdown(SocketShutdown.Send);
        Assert.That(await ReadToEndAsync(socket, token), Is.Empty);
        var deadline = Stopwatch.StartNew();
        while (!logs.Messages.Any(m => m.Contains("received FIN", StringComparison.Ordinal)) && deadline.Elapsed < TimeSpan.FromSeconds(10))
            await Task.Delay(20, token);
        var messages = logs.Messages.ToArray();
        Assert.That(messages, Has.Some.Contains("received FIN"), "the peer's FIN, at Debug");
        Assert.That(messages, Has.Some.Contains("paused"), "back-pressure: reading paused, at Debug");
        Assert.That(messages, Has.Some.Contains("resumed"), "back-pressure: reading resumed, at Debug");
    }

    private static IEnumerable<Exception> Chain(Exception e)
    {
        for (Exception? at = e; at is not null; at = at.InnerException)
        {
            yield return at;
            if (at is AggregateException aggregate)
                foreach (var inner in aggregate.InnerExceptions.SelectMany(Chain))
                    yield return inner;
        }
    }

    private static async Task<string> ReadToEndAsync(Socket socket, CancellationToken token)
    {
        var text = new StringBuilder();
        var buffer = new byte[16 * 1024];
        for (int n; (n = await socket.ReceiveAsync(buffer.AsMemory(), token).AsTask().WaitAsync(TimeSpan.FromSeconds(30), token)) > 0;)
            text.Append(Encoding.Latin1.GetString(buffer, 0, n));
        return text.ToString();
    }

    /// <summary>Collects the transports' log lines (Debug and up), for the tests that read them.</summary>
    private sealed class ListLogger : ILoggerProvider, ILogger
    {
        public ConcurrentQueue<string> Messages { get; } = new();
        public ILogger CreateLogger(string categoryName) => this;
        public void Dispose() { }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Messages.Enqueue(formatter(state, exception));
    }
}
