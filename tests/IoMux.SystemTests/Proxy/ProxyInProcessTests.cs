using System.Net;
using System.Net.Sockets;
using IoMux.Loop;
using IoMux.SocketProxy;
using Microsoft.Extensions.Logging.Abstractions;

namespace IoMux.Tests.Proxy;

/// <summary>The proxy's server class on an event loop inside the test process, on every backend that runs here:
/// for what a process cannot be made to show (a name with several addresses) and for the counters.</summary>
[Category("System")]
[TestFixture("epoll")]
[TestFixture("poll")]
[TestFixture("select")]
[NonParallelizable]
public sealed class ProxyInProcessTests(string backend)
{
    [Test, CancelAfter(60_000)]
    public async Task EachAddressOfANameIsTriedInOrderUntilOneAnswers()
    {
        using var server = TestBackend.Tcp(TestBackend.Echo);
        int port = int.Parse(server.Target.Split(':')[1]);
        int refusingPort = ProxyProcess.FreePort();
        // The first address refuses (nothing listens on that port of 127.0.0.2), the second answers.
        var target = BackendTarget.WithResolver("twice", port, () => Task.FromResult<IReadOnlyList<EndPoint>>(
            [new IPEndPoint(IPAddress.Parse("127.0.0.2"), refusingPort == port ? port + 1 : port), new IPEndPoint(IPAddress.Loopback, port)]));
        // 127.0.0.2 is loopback too on Linux, but the echo server is bound to 127.0.0.1 only: the first refuses.
        var (counters, _) = await RunProxy(target, async endpoint =>
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(endpoint);
            await TestBackend.SendAll(client, new byte[5000]);
            client.Shutdown(SocketShutdown.Send);
            Assert.That((await TestBackend.ReceiveAll(client)).Bytes, Is.EqualTo(5000));
        });
        Assert.That(counters.BackendFailures, Is.EqualTo(0), "a refused first address is not a failed connection");
        Assert.That(counters.BytesToBackend, Is.EqualTo(5000));
        Assert.That(counters.BytesToClients, Is.EqualTo(5000));
    }

    [Test, CancelAfter(60_000)]
    public async Task WhenEveryAddressRefusesTheClientIsClosedAndCounted()
    {
        int port = ProxyProcess.FreePort();
        var target = BackendTarget.WithResolver("nowhere", port, () => Task.FromResult<IReadOnlyList<EndPoint>>(
            [new IPEndPoint(IPAddress.Loopback, port), new IPEndPoint(IPAddress.Parse("127.0.0.2"), port)]));
        var (counters, _) = await RunProxy(target, async endpoint =>
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(endpoint);
            Assert.That((await TestBackend.ReceiveAll(client)).Bytes, Is.EqualTo(0));
        });
        Assert.That(counters.BackendFailures, Is.EqualTo(1));
        Assert.That(counters.Closed, Is.EqualTo(1));
    }

    /// <summary>Runs a proxy on its own loop thread for the duration of <paramref name="client"/>, then stops it.</summary>
    private async Task<(ProxyCounters Counters, int ExitCode)> RunProxy(BackendTarget target, Func<IPEndPoint, Task> client)
    {
        int listener = Listeners.Bind($"127.0.0.1:{ProxyProcess.FreePort()}");
        using var probe = new Socket(new SafeSocketHandle(listener, ownsHandle: false));
        var endpoint = (IPEndPoint)probe.LocalEndPoint!;
        var loop = new EventLoop(PollerFactory.Create(backend));
        var proxy = new ProxyServer(loop, [listener], new ProxyOptions { Target = target }, NullLogger.Instance);
        var run = Task.Factory.StartNew(() => loop.Run(), TaskCreationOptions.LongRunning);
        try
        {
            await client(endpoint);
        }
        finally
        {
            loop.Post(proxy.Stop);
        }
        int code = await run.WaitAsync(TimeSpan.FromSeconds(20));
        loop.Dispose();
        return (proxy.Counters, code);
    }
}
