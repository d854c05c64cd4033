using System.Net.Sockets;
using System.Text;

namespace IoMux.Tests.Proxy;

/// <summary>The relay of the real iomux-socket-proxyd process, started by systemd-socket-activate: every byte
/// arrives (checksums and the proxy's own exact byte counts), half-closes pass through in both directions,
/// hundreds of connections run at once, and a Unix-socket backend works like a TCP one.</summary>
/// <remarks>Runs on the proxy's default (epoll with splice), with read/write copying, and on the poll backend
/// (IOMUX_BACKEND). select is left out: 500 connections need descriptors past its FD_SETSIZE of 1024.</remarks>
[Category("System")]
[TestFixture("splice", "epoll")]
[TestFixture("buffer", "epoll")]
[TestFixture("splice", "poll")]
[NonParallelizable]
public sealed class ProxyRelayTests(string copy, string backend)
{
    private Dictionary<string, string> Environment => new() { ["IOMUX_BACKEND"] = backend, ["SYSTEMD_LOG_LEVEL"] = "debug" };

    private const long HundredMebibytes = 100L << 20;

    private string CopyOption => $"--copy={copy}";

    [Test, CancelAfter(120_000)]
    public async Task HundredMebibytesEachWayArriveIntactAndAreCountedExactly(CancellationToken cancel)
    {
        using var server = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.ActivatedWith(Environment, CopyOption, server.Target);
        var baseline = await proxy.WarmUpAndCountDescriptors(cancel);
        using (var client = proxy.Connect())
        {
            var received = TestBackend.ReceiveAll(client, cancel);
            string sent = await TestBackend.SendPattern(client, HundredMebibytes, seed: 1, cancel);
            client.Shutdown(SocketShutdown.Send);
            var (bytes, hash) = await received;
            Assert.That(bytes, Is.EqualTo(HundredMebibytes));
            Assert.That(hash, Is.EqualTo(sent), "the echo through the proxy differs from what was sent");
        }
        Assert.That(ProxyProcess.Eventually(() => proxy.CountDescriptors() == baseline, TimeSpan.FromSeconds(10)), Is.True,
            "the connection's sockets stay open after both sides ended");
        proxy.Signal(ProxyProcess.SIGTERM);
        Assert.That(proxy.WaitForExit(TimeSpan.FromSeconds(10)), Is.True);
        Assert.That(proxy.ExitCode, Is.EqualTo(0));
        Assert.That(proxy.Log, Does.Contain($"({backend} backend)"));
        Assert.That(proxy.Log, Does.Contain("Received fd 3 (unknown) by socket activation."), "LISTEN_FDS/LISTEN_FDNAMES were not read as passed");
        Assert.That(proxy.Log, Does.Contain($"Relayed 2 connection(s): {HundredMebibytes + 1} bytes to the backend, {HundredMebibytes + 1} bytes to clients"));
        Assert.That(server.Failures, Is.Empty);
    }

    [Test, CancelAfter(120_000)]
    public async Task FiveHundredConnectionsRelayAtOnce(CancellationToken cancel)
    {
        const int clients = 500, bytesEach = 64 * 1024;
        using var server = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.ActivatedWith(Environment, CopyOption, "--connections-max=600", server.Target);
        var baseline = await proxy.WarmUpAndCountDescriptors(cancel);
        int warmUps = server.Accepted;
        var sockets = new List<Socket>();
        try
        {
            for (int i = 0; i < clients; i++)
                sockets.Add(proxy.Connect());
            // All 500 are relayed at the same time: the backend holds 500 connections from the proxy.
            Assert.That(ProxyProcess.Eventually(() => server.Accepted - warmUps == clients, TimeSpan.FromSeconds(30)), Is.True,
                $"the backend saw {server.Accepted - warmUps} connections");
            var runs = sockets.Select(async (socket, i) =>
            {
                var received = TestBackend.ReceiveAll(socket, cancel);
                string sent = await TestBackend.SendPattern(socket, bytesEach, seed: i, cancel);
                socket.Shutdown(SocketShutdown.Send);
                var (bytes, hash) = await received;
                return bytes == bytesEach && hash == sent;
            }).ToList();
            var results = await Task.WhenAll(runs);
            Assert.That(results.Count(ok => ok), Is.EqualTo(clients));
        }
        finally
        {
            foreach (var socket in sockets)
                socket.Dispose();
        }
        Assert.That(ProxyProcess.Eventually(() => proxy.CountDescriptors() == baseline, TimeSpan.FromSeconds(15)), Is.True,
            $"descriptors: {proxy.CountDescriptors()}, before: {baseline}");
        proxy.Signal(ProxyProcess.SIGTERM);
        Assert.That(proxy.WaitForExit(TimeSpan.FromSeconds(10)), Is.True);
        Assert.That(proxy.Log, Does.Contain($"Relayed {clients + 1} connection(s): {clients * bytesEach + 1} bytes to the backend, {clients * bytesEach + 1} bytes to clients"));
        Assert.That(server.Failures, Is.Empty);
    }

    [Test, CancelAfter(60_000)]
    public async Task ClientHalfCloseReachesTheBackendWhichCanStillAnswer(CancellationToken cancel)
    {
        var response = new byte[1 << 20];
        Random.Shared.NextBytes(response);
        using var server = TestBackend.Tcp(async socket =>
        {
            var (requestBytes, _) = await TestBackend.ReceiveAll(socket, cancel); // returns at the client's half-close
            Assert.That(requestBytes, Is.EqualTo(5));
            await TestBackend.SendAll(socket, response, cancel);
            socket.Shutdown(SocketShutdown.Send);
        });
        using var proxy = ProxyProcess.ActivatedWith(Environment, CopyOption, server.Target);
        using var client = proxy.Connect();
        await TestBackend.SendAll(client, Encoding.ASCII.GetBytes("hello"), cancel);
        client.Shutdown(SocketShutdown.Send);
        var (bytes, hash) = await TestBackend.ReceiveAll(client, cancel);
        Assert.That(bytes, Is.EqualTo(response.Length));
        Assert.That(hash, Is.EqualTo(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(response))));
        Assert.That(server.Failures, Is.Empty);
    }

    [Test, CancelAfter(60_000)]
    public async Task BackendHalfCloseReachesTheClientWhichCanStillSend(CancellationToken cancel)
    {
        var received = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var server = TestBackend.Tcp(async socket =>
        {
            await TestBackend.SendAll(socket, new byte[300_000], cancel);
            socket.Shutdown(SocketShutdown.Send);
            var (bytes, _) = await TestBackend.ReceiveAll(socket, cancel);
            received.SetResult(bytes);
        });
        using var proxy = ProxyProcess.ActivatedWith(Environment, CopyOption, server.Target);
        using var client = proxy.Connect();
        var (fromBackend, _) = await TestBackend.ReceiveAll(client, cancel); // the backend's FIN arrives as end of stream
        Assert.That(fromBackend, Is.EqualTo(300_000));
        await TestBackend.SendPattern(client, 2 << 20, seed: 7, cancel);
        client.Shutdown(SocketShutdown.Send);
        Assert.That(await received.Task.WaitAsync(TimeSpan.FromSeconds(20)), Is.EqualTo(2 << 20));
        Assert.That(server.Failures, Is.Empty);
    }

    /// <summary>Flow control: while the backend reads nothing, the proxy stops reading the client, so what the
    /// client can send is bounded by socket buffers and one pipe, not by the proxy's memory. Once the backend
    /// reads, every byte arrives.</summary>
    [Test, CancelAfter(120_000)]
    public async Task ASideThatCannotAbsorbStopsTheOtherSideInsteadOfBuffering(CancellationToken cancel)
    {
        var startReading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var received = new TaskCompletionSource<(long, string)>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var server = TestBackend.Tcp(async socket =>
        {
            await startReading.Task;
            received.SetResult(await TestBackend.ReceiveAll(socket, cancel));
        });
        using var proxy = ProxyProcess.ActivatedWith(Environment, CopyOption, server.Target);
        using var client = proxy.Connect();
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        var chunk = new byte[64 * 1024];
        Random.Shared.NextBytes(chunk);
        long accepted = 0;
        const long ceiling = 256L << 20; // bounds the loop if flow control were missing
        client.Blocking = false;
        var lastProgress = System.Diagnostics.Stopwatch.StartNew();
        while (accepted < ceiling && lastProgress.Elapsed < TimeSpan.FromSeconds(1))
        {
            try
            {
                int n = client.Send(chunk);
                hash.AppendData(chunk, 0, n);
                accepted += n;
                lastProgress.Restart();
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                await Task.Delay(20, cancel);
            }
        }
        client.Blocking = true;
        TestContext.Out.WriteLine($"accepted while the backend read nothing: {accepted} bytes");
        // Client send buffer + proxy receive buffer + one pipe + proxy send buffer + backend receive buffer,
        // each autotuned to a few MiB at most on Linux: tens of MiB, where unbounded buffering would take all 256.
        Assert.That(accepted, Is.LessThan(48L << 20), $"the proxy absorbed {accepted} bytes with the backend reading nothing");

        startReading.SetResult();
        for (int i = 0; i < 16; i++)
        {
            await TestBackend.SendAll(client, chunk, cancel);
            hash.AppendData(chunk);
            accepted += chunk.Length;
        }
        client.Shutdown(SocketShutdown.Send);
        var (bytes, digest) = await received.Task.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.That(bytes, Is.EqualTo(accepted));
        Assert.That(digest, Is.EqualTo(Convert.ToHexString(hash.GetHashAndReset())));
    }

    /// <summary>A name target goes through the resolver (on the thread pool, the answer posted to the loop).</summary>
    [Test, CancelAfter(60_000)]
    public async Task HostNameTargetIsResolved(CancellationToken cancel)
    {
        using var server = TestBackend.Tcp(TestBackend.Echo);
        string port = server.Target.Split(':')[1];
        using var proxy = ProxyProcess.ActivatedWith(Environment, CopyOption, $"localhost:{port}");
        for (int i = 0; i < 3; i++)
        {
            using var client = proxy.Connect();
            await TestBackend.SendAll(client, new byte[10_000], cancel);
            client.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            Assert.That((await TestBackend.ReceiveAll(client, cancel)).Bytes, Is.EqualTo(10_000));
        }
        Assert.That(proxy.Log, Does.Not.Contain("Failed to connect"));
    }

    [Test, CancelAfter(60_000)]
    public async Task UnixSocketBackend(CancellationToken cancel)
    {
        using var server = TestBackend.Unix(TestBackend.Echo);
        using var proxy = ProxyProcess.ActivatedWith(Environment, CopyOption, server.Target);
        using var client = proxy.Connect();
        var received = TestBackend.ReceiveAll(client, cancel);
        string sent = await TestBackend.SendPattern(client, 8 << 20, seed: 3, cancel);
        client.Shutdown(SocketShutdown.Send);
        var (bytes, hash) = await received;
        Assert.That(bytes, Is.EqualTo(8 << 20));
        Assert.That(hash, Is.EqualTo(sent));
        Assert.That(server.Failures, Is.Empty);
    }

    /// <summary><c>@name</c> is the abstract socket <c>name</c>, as in systemd-socket-proxyd (issue 21): the target
    /// passes through the real command line and the bytes go through a listener that exists only in the abstract
    /// namespace (a pathname connect to "@name" would fail with ENOENT).</summary>
    [Test, CancelAfter(60_000)]
    public async Task AbstractSocketBackend(CancellationToken cancel)
    {
        using var server = TestBackend.Abstract(TestBackend.Echo);
        Assert.That(File.Exists(server.Target), Is.False);
        using var proxy = ProxyProcess.ActivatedWith(Environment, CopyOption, server.Target);
        using var client = proxy.Connect();
        var received = TestBackend.ReceiveAll(client, cancel);
        string sent = await TestBackend.SendPattern(client, 1 << 20, seed: 4, cancel);
        client.Shutdown(SocketShutdown.Send);
        var (bytes, hash) = await received;
        Assert.That(bytes, Is.EqualTo(1 << 20));
        Assert.That(hash, Is.EqualTo(sent));
        Assert.That(server.Accepted, Is.EqualTo(1));
        Assert.That(server.Failures, Is.Empty);
    }
}
