using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using IoMux.AspNetCore;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace IoMux.Tests.AspNetCore;

/// <summary>
/// A connection's life at its edges, as Kestrel's socket transport lives it (the reference): a response still being
/// sent when Kestrel disposes the connection, and where connection IDs start.
/// </summary>
[TestFixtureSource(nameof(Targets))]
[NonParallelizable]
public sealed class TransportLifecycleTests(TransportTarget target)
{
    /// <summary>The reference and IoMux on epoll.</summary>
    public static IEnumerable<TransportTarget> Targets() =>
        TransportTarget.All().Where(t => t.Name is "kestrel-sockets" or "epoll");

    [OneTimeSetUp]
    public void Supported()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
    }

    [Test, CancelAfter(60_000)]
    public async Task ASlowReaderGetsTheWholeResponseAfterTheAppCompleted(CancellationToken token)
    {
        // Unbounded write buffers on both transports: the app writes 16 MiB and completes at once, Kestrel completes
        // the connection and disposes it while most of the response still waits for a client that reads nothing for
        // 6 s. Kestrel's SocketConnection.DisposeAsync awaits its sender however long that takes; IoMux's gave it 5 s
        // and then reset the connection, cutting the response off.
        const int length = 16 * 1024 * 1024;
        await using var host = await FunctionalHost.StartAsync(target, (h, o) => h.Listen(o, "http", IPAddress.Loopback), maxWriteBufferSize: null);
        var completed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Handler = async ctx =>
        {
            ctx.Features.Get<IHttpMinResponseDataRateFeature>()!.MinDataRate = null;
            ctx.Response.ContentLength = length;
            await ctx.Response.Body.WriteAsync(TestApp.Pattern(length));
            completed.TrySetResult();
        };
        using var client = await RawClient.ConnectAsync(host.Port(), token);
        client.Socket.ReceiveBufferSize = 64 * 1024; // the kernel holds little of it for the client
        await client.SendAsync(token, "GET / HTTP/1.1", "Host:", "Connection: close", "", "");
        await completed.Task.WaitAsync(TimeSpan.FromSeconds(10), token);
        await Task.Delay(TimeSpan.FromSeconds(6), token);
        var head = await client.ReceiveAsync("\r\n\r\n", token);
        long body = head.Length - (head.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4);
        var (rest, end) = await client.DrainAsync(token);
        Assert.That(body + rest, Is.EqualTo(length), "every byte of the response");
        Assert.That(end, Is.EqualTo("FIN"), "an orderly end after it");
    }

    [Test, CancelAfter(60_000)]
    public async Task ConnectionIdsStartFromTheClock(CancellationToken token)
    {
        // As Kestrel's CorrelationIdGenerator: a process-wide counter seeded with DateTime.UtcNow.Ticks, written as 13
        // base-32 digits; so a restarted process does not hand out the previous one's IDs. (A counter from 0 is
        // unique within a process too: only the value shows the seed.)
        await using var app = await TestApp.StartAsync(target);
        using var client = new HttpClient { BaseAddress = app.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        var id = (await client.GetStringAsync("/whoami", token)).Split(' ')[2];
        Assert.That(id, Does.Match("^[0-9A-V]{13}$"), "13 base-32 digits");
        long value = id.Aggregate(0L, (v, c) => v * 32 + "0123456789ABCDEFGHIJKLMNOPQRSTUV".IndexOf(c));
        var started = Process.GetCurrentProcess().StartTime.ToUniversalTime();
        Assert.That(new DateTime(value, DateTimeKind.Utc), Is.InRange(started.AddSeconds(-5), DateTime.UtcNow.AddSeconds(5)),
            $"the ID {id} counts from the clock at start-up");
    }
}

/// <summary>
/// Failures at the transport's edges that Kestrel's socket transport does not meet the same way (so IoMux alone runs
/// them, on epoll and on select): an accepted socket the backend refuses to watch, and a pool gone before its
/// connections. Each stopped a loop, and with it the process, before.
/// </summary>
[TestFixtureSource(nameof(Targets))]
[NonParallelizable]
public sealed partial class TransportFailureTests(TransportTarget target)
{
    public static IEnumerable<TransportTarget> Targets() =>
        TransportTarget.All().Where(t => t.Name is "epoll" or "select");

    [OneTimeSetUp]
    public void Supported()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
    }

    [LibraryImport("libc", SetLastError = true)] private static partial int getrlimit(int resource, [Out] ulong[] limits);
    [LibraryImport("libc", SetLastError = true)] private static partial int setrlimit(int resource, ulong[] limits);

    [Test, CancelAfter(60_000)]
    public async Task AnAcceptedSocketTheBackendCannotWatchIsClosedAndTheLoopServesOn(CancellationToken token)
    {
        // select(2) watches descriptors below FD_SETSIZE (1024) only: an accepted socket numbered above is refused at
        // registration. The transport registered it outside its try: the socket leaked and the exception left the
        // loop's callback, which stopped the loop (here: the process). Kestrel's sockets have no such registration
        // On epoll, which watches any number, the same client is served.
        var logs = new LogLines();
        await using var app = await TestApp.StartAsync(target, logs: logs);
        using var warm = new HttpClient { BaseAddress = app.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        Assert.That(await warm.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello));
        var saved = new ulong[2];
        Assert.That(getrlimit(Interop.LibC.RLIMIT_NOFILE, saved), Is.EqualTo(0));
        var fillers = new List<Microsoft.Win32.SafeHandles.SafeFileHandle>();
        try
        {
            if (saved[0] < 2048)
                Assert.That(setrlimit(Interop.LibC.RLIMIT_NOFILE, [Math.Min(2048, saved[1]), saved[1]]), Is.EqualTo(0), "room above FD_SETSIZE");
            // Every number below 1024 taken, so the next socket the server accepts is numbered above.
            while (fillers.Count < 4096)
            {
                var handle = File.OpenHandle("/dev/null");
                fillers.Add(handle);
                if (handle.DangerousGetHandle() >= 1030)
                    break;
            }
            using var client = await RawClient.ConnectAsync(app.Port, token);
            await client.SendAsync(token, "GET /hello HTTP/1.1", "Host: x", "", "");
            if (target.Name == "select")
            {
                Assert.That(await client.ReadToEndAsync(token), Is.AnyOf("FIN", "RST"), "the connection it could not watch is closed");
                Assert.That(client.Received, Is.Empty);
            }
            else
            {
                await client.ReceiveAsync("Hello, World!", token); // epoll watches any number: the same client is served
            }
        }
        finally
        {
            foreach (var handle in fillers)
                handle.Dispose();
            setrlimit(Interop.LibC.RLIMIT_NOFILE, saved);
        }
        if (target.Name == "select")
            Assert.That(logs.Lines, Has.Some.Contains("could not start an accepted connection"));
        using var after = new HttpClient { BaseAddress = app.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        for (int i = 0; i < 4; i++) // both loops: each accepts some
            Assert.That(await after.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello), "the loops still serve");
    }

    [Test, CancelAfter(60_000)]
    public async Task AConnectionOutlivingItsListenersPoolEndsWithAnErrorAndTheLoopServesOn(CancellationToken token)
    {
        // Kestrel's pools (IMemoryPoolFactory, .NET 10) throw ObjectDisposedException once disposed, and a listener
        // disposes its pool while connections it accepted may live on (a host that disposes listeners first, a
        // transport used without Kestrel). The next receive rented from it on the loop and the exception stopped the
        // loop; Kestrel's SocketConnection catches it in its receive loop and ends the connection's input with an
        // IOException, as IoMux now does.
        var backend = target.Backend!;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        await using var services = builder.Build();
        var pools = services.Services.GetRequiredService<IMemoryPoolFactory<byte>>();
        var options = new IoMuxTransportOptions { ThreadCount = 1, PollerOverride = () => new Poller(backend.Create()), Scheduling = target.Scheduling };
        await using var factory = new IoMuxTransportFactory(Options.Create(options), NullLoggerFactory.Instance, pools);
        var doomed = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0), token);
        var other = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0), token);
        try
        {
            using var client = await RawClient.ConnectAsync(((IPEndPoint)doomed.EndPoint).Port, token);
            var connection = (await doomed.AcceptAsync(token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), token))!;
            await doomed.DisposeAsync(); // and its pool
            await client.SendAsync(token, "after the pool went");
            Exception? failure = null;
            try
            {
                await connection.Transport.Input.ReadAsync(token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), token);
            }
            catch (Exception e) when (e is not TimeoutException)
            {
                failure = e;
            }
            Assert.That(failure, Is.InstanceOf<IOException>().And.Property(nameof(Exception.InnerException)).InstanceOf<ObjectDisposedException>(),
                "the input ends with the pool's error");
            await connection.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10), token);

            // The same loop accepts and receives on the other listener.
            using var next = await RawClient.ConnectAsync(((IPEndPoint)other.EndPoint).Port, token);
            var alive = (await other.AcceptAsync(token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), token))!;
            await next.SendAsync(token, "hello");
            var read = await alive.Transport.Input.ReadAsync(token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), token);
            Assert.That(Encoding.ASCII.GetString(read.Buffer.ToArray()), Is.EqualTo("hello"), "the loop still receives");
            alive.Transport.Input.AdvanceTo(read.Buffer.End);
            await alive.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10), token);
        }
        finally
        {
            await other.DisposeAsync();
        }
    }
}

/// <summary>A host's log lines (the transports log at Debug through TestApp's provider), for the tests that read them.</summary>
public sealed class LogLines : ILoggerProvider, ILogger
{
    private readonly ConcurrentQueue<string> _lines = new();
    public string[] Lines => _lines.ToArray();
    public ILogger CreateLogger(string categoryName) => this;
    public void Dispose() { }
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        _lines.Enqueue(formatter(state, exception));
}
