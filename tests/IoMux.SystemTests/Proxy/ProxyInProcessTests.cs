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
    public async Task EachAddressOfANameIsTriedInOrderUntilOneAnswers(CancellationToken cancel)
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
            await client.ConnectAsync(endpoint, cancel);
            await TestBackend.SendAll(client, new byte[5000], cancel);
            client.Shutdown(SocketShutdown.Send);
            Assert.That((await TestBackend.ReceiveAll(client, cancel)).Bytes, Is.EqualTo(5000));
        });
        Assert.That(counters.BackendFailures, Is.EqualTo(0), "a refused first address is not a failed connection");
        Assert.That(counters.BytesToBackend, Is.EqualTo(5000));
        Assert.That(counters.BytesToClients, Is.EqualTo(5000));
    }

    [Test, CancelAfter(60_000)]
    public async Task WhenEveryAddressRefusesTheClientIsClosedAndCounted(CancellationToken cancel)
    {
        int port = ProxyProcess.FreePort();
        var target = BackendTarget.WithResolver("nowhere", port, () => Task.FromResult<IReadOnlyList<EndPoint>>(
            [new IPEndPoint(IPAddress.Loopback, port), new IPEndPoint(IPAddress.Parse("127.0.0.2"), port)]));
        var (counters, _) = await RunProxy(target, async endpoint =>
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(endpoint, cancel);
            Assert.That((await TestBackend.ReceiveAll(client, cancel)).Bytes, Is.EqualTo(0));
        });
        Assert.That(counters.BackendFailures, Is.EqualTo(1));
        Assert.That(counters.Closed, Is.EqualTo(1));
    }

    /// <summary>In splice mode a short exchange is copied through the first buffer and opens no pipe; a direction that
    /// carries a bulk stream goes on through a splice pipe of its own (and only that direction); in buffer mode no
    /// pipe is ever opened. Every byte arrives in order either way.</summary>
    [TestCase(CopyMode.Splice, 100, 0)]
    [TestCase(CopyMode.Splice, 16 * 1024 - 1, 0)]
    [TestCase(CopyMode.Splice, 4 << 20, 1)]
    [TestCase(CopyMode.Buffer, 4 << 20, 0)]
    [CancelAfter(60_000)]
    public async Task OnlyADirectionCarryingABulkStreamOpensASplicePipe(CopyMode mode, int responseBytes, int pipes, CancellationToken cancel)
    {
        var response = new byte[responseBytes];
        Random.Shared.NextBytes(response);
        using var server = TestBackend.Tcp(async socket =>
        {
            Assert.That((await TestBackend.ReceiveAll(socket, cancel)).Bytes, Is.EqualTo(5)); // up to the client's half-close
            await TestBackend.SendAll(socket, response, cancel);
            socket.Shutdown(SocketShutdown.Send);
        });
        string expected = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(response));
        var (counters, _) = await RunProxy(BackendTarget.Parse(server.Target), async endpoint =>
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(endpoint, cancel);
            await TestBackend.SendAll(client, new byte[5], cancel);
            client.Shutdown(SocketShutdown.Send);
            var (bytes, hash) = await TestBackend.ReceiveAll(client, cancel);
            Assert.That(bytes, Is.EqualTo(responseBytes));
            Assert.That(hash, Is.EqualTo(expected), "the response arrived changed or out of order");
        }, mode);
        Assert.That(counters.PipesOpened, Is.EqualTo(pipes));
        Assert.That(counters.BytesToClients, Is.EqualTo(responseBytes));
        Assert.That(server.Failures, Is.Empty);
    }

    /// <summary>Runs a proxy on its own loop thread for the duration of <paramref name="client"/>, then stops it.</summary>
    private async Task<(ProxyCounters Counters, int ExitCode)> RunProxy(BackendTarget target, Func<IPEndPoint, Task> client,
        CopyMode? mode = null)
    {
        int listener = Listeners.Bind($"127.0.0.1:{ProxyProcess.FreePort()}");
        using var probe = new Socket(new SafeSocketHandle(listener, ownsHandle: false));
        var endpoint = (IPEndPoint)probe.LocalEndPoint!;
        var loop = new EventLoop(PollerFactory.Create(backend));
        var options = mode is { } copy ? new ProxyOptions { Target = target, CopyMode = copy } : new ProxyOptions { Target = target };
        var proxy = new ProxyServer(loop, [listener], options, NullLogger.Instance);
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
