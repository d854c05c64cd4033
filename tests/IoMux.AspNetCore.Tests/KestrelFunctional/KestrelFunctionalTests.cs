using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace IoMux.Tests.AspNetCore;

/// <summary>
/// Kestrel's own functional tests, restated (issue 23 item 4): aspnetcore runs
/// src/Servers/Kestrel/test/FunctionalTests once per transport (TransportSelector); each test here restates one of
/// their behaviours, names the test it restates (Kestrel class.method), and runs the same assertion on Kestrel's socket
/// transport (the reference) and on IoMux's. Their TestServer becomes a host whose handler each test sets; their
/// TestConnection a <see cref="RawClient"/>, so what is asserted is on the wire: how and when the connection ends.
/// Where a behaviour differs, docs/ASPNETCORE.md says so.
/// </summary>
[TestFixtureSource(typeof(FunctionalTargets), nameof(FunctionalTargets.All))]
[NonParallelizable]
public sealed partial class KestrelFunctionalTests(TransportTarget target)
{
    /// <summary>How many upgraded connections the shared host allows at once (UpgradeTests.RejectsUpgradeWhenLimitReached).</summary>
    private const int UpgradeLimit = 2;

    private FunctionalHost _host = null!;
    private FunctionalHost? _small, _timeouts;

    /// <summary>The shared host's listeners: HTTP/1.1, HTTP/1.1 on [::1], h2c (prior knowledge), and two with the
    /// connection middleware of ConnectionMiddlewareTests. Its read buffer is unbounded (MaxRequestBufferSizeTests'
    /// null case); the tests that need back-pressure use <see cref="SmallAsync"/>.</summary>
    [OneTimeSetUp]
    public async Task StartAsync()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        _host = await FunctionalHost.StartAsync(target, (host, o) =>
        {
            o.Limits.MaxConcurrentUpgradedConnections = UpgradeLimit;
            host.Listen(o, "http", IPAddress.Loopback);
            host.Listen(o, "ipv6", IPAddress.IPv6Loopback);
            host.Listen(o, "h2c", IPAddress.Loopback, l => l.Protocols = HttpProtocols.Http2);
            host.Listen(o, "throwing", IPAddress.Loopback, l => l.Use(next => context => throw new InvalidOperationException("a connection middleware that throws")));
            host.Listen(o, "replacing", IPAddress.Loopback, l => l.Use(next => async context =>
            {
                // ConnectionMiddlewareTests.DisposeAsyncAfterReplacingTransportClosesConnection
                var replaced = new RecordingDuplexPipe();
                context.Transport = replaced;
                _replaced = replaced;
                await context.DisposeAsync();
                await _replacedRelease.Task.WaitAsync(TimeSpan.FromSeconds(30));
            }));
        }, maxReadBufferSize: null);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        _replacedRelease.TrySetResult();
        if (_small is not null)
            await _small.DisposeAsync();
        if (_timeouts is not null)
            await _timeouts.DisposeAsync();
        if (_host is not null)
            await _host.DisposeAsync();
    }

    [SetUp]
    public void Reset()
    {
        _host.ClearLogs();
        _host.Handler = _ => Task.CompletedTask;
    }

    /// <summary>A host whose transport buffers 16 KiB of request at most (MaxRequestBufferSizeTests, and the
    /// "unobserved close" tests that wait for the transport to pause reading), started once per fixture.</summary>
    private async Task<FunctionalHost> SmallAsync()
    {
        _small ??= await FunctionalHost.StartAsync(target, (host, o) =>
        {
            o.Limits.MaxRequestBufferSize = SmallBuffer;
            o.Limits.MaxRequestHeadersTotalSize = SmallBuffer;
            o.Limits.MinRequestBodyDataRate = null;
            host.Listen(o, "http", IPAddress.Loopback);
        }, maxReadBufferSize: SmallBuffer);
        _small.ClearLogs();
        return _small;
    }

    private const int SmallBuffer = 16 * 1024;

    /// <summary>The request line of GET / with an empty Host, as TestConnection.SendEmptyGet sends it.</summary>
    private static readonly string[] EmptyGet = ["GET / HTTP/1.1", "Host:", "", ""];

    private static Task<T> Within<T>(Task<T> task, CancellationToken token, double seconds = 10) => task.WaitAsync(TimeSpan.FromSeconds(seconds), token);

    private static Task Within(Task task, CancellationToken token, double seconds = 10) => task.WaitAsync(TimeSpan.FromSeconds(seconds), token);

    private static TaskCompletionSource Signal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private static TaskCompletionSource<T> Signal<T>() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>ServerCanAbortConnectionAfterUnobservedClose's client: starts a POST whose body is 8 times the small
    /// host's buffer, waits until the transport paused reading (so it will not see the close), and closes.</summary>
    private static async Task SendUntilPausedThenCloseAsync(FunctionalHost host, CancellationToken token)
    {
        var body = new byte[SmallBuffer * 8];
        using var client = await RawClient.ConnectAsync(host.Port(), token);
        await client.SendAsync(token, "POST / HTTP/1.1", "Host:", $"Content-Length: {body.Length}", "", "");
        _ = client.Socket.SendAsync(body, System.Net.Sockets.SocketFlags.None, token);
        await host.WaitForLogAsync(l => l.IsTransport && l.Event.Name == "ConnectionPause", "ConnectionPause", token);
    }

    /// <summary>Lines above Debug from the transport, or above <paramref name="core"/> from Kestrel's core.</summary>
    private IEnumerable<LogLine> Louder(FunctionalHost host, Microsoft.Extensions.Logging.LogLevel core = Microsoft.Extensions.Logging.LogLevel.Debug) =>
        host.Logs.Where(l => (l.IsTransport && l.Level > Microsoft.Extensions.Logging.LogLevel.Debug) || (l.IsKestrelCore && l.Level > core));
}
