using System.Diagnostics;
using System.Net.Sockets;

namespace IoMux.Tests.Proxy;

/// <summary>What the proxy does when something breaks: a backend that refuses, a reset on either side in the middle
/// of a transfer, running out of descriptors. It keeps serving, closes what must be closed promptly, logs once,
/// and leaks no socket or pipe.</summary>
[Category("System")]
[NonParallelizable]
public sealed class ProxyFaultTests
{
    [Test, CancelAfter(60_000)]
    public async Task RefusingBackendClosesEachClientPromptlyLogsOnceAndRecovers()
    {
        int port = ProxyProcess.FreePort(); // nothing listens there: connects are refused
        using var proxy = ProxyProcess.Activated($"127.0.0.1:{port}");
        for (int i = 0; i < 5; i++)
        {
            using var client = proxy.Connect();
            var clock = Stopwatch.StartNew();
            var (bytes, _) = await TestBackend.ReceiveAll(client).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.That(bytes, Is.EqualTo(0));
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)), "the client was not closed promptly");
        }
        Assert.That(proxy.CountOccurrences("Cannot connect to"), Is.EqualTo(1), proxy.Log);
        Assert.That(proxy.Log, Does.Contain("ECONNREFUSED"));

        using var backend = TestBackend.Tcp(TestBackend.Echo, port);
        using (var client = proxy.Connect())
        {
            await TestBackend.SendAll(client, new byte[1000]);
            client.Shutdown(SocketShutdown.Send);
            Assert.That((await TestBackend.ReceiveAll(client)).Bytes, Is.EqualTo(1000));
        }
        proxy.WaitForLog("answers again after 5 failed connection(s)", TimeSpan.FromSeconds(5));
        Assert.That(proxy.HasExited, Is.False);
    }

    [Test, CancelAfter(60_000)]
    public async Task ClientResetMidStreamClosesBothSidesAndLeaksNothing()
    {
        var backendEnded = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var backend = TestBackend.Tcp(async socket =>
        {
            if (await EchoIfWarmUp(socket))
                return;
            var buffer = new byte[1 << 16];
            try
            {
                // Reads slowly so the proxy holds bytes in flight when the client resets.
                while (await socket.ReceiveAsync(buffer, SocketFlags.None) > 0)
                    await Task.Delay(1);
                backendEnded.TrySetResult("end of stream");
            }
            catch (SocketException e)
            {
                backendEnded.TrySetResult(e.SocketErrorCode.ToString());
            }
        });
        using var proxy = ProxyProcess.Activated(backend.Target);
        var baseline = await proxy.WarmUpAndCountDescriptors();

        var client = proxy.Connect();
        var sending = TestBackend.SendPattern(client, 64L << 20, seed: 5);
        await Task.Delay(300);
        client.LingerState = new LingerOption(true, 0);
        client.Dispose(); // RST while the proxy is mid-transfer
        try { await sending; } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }

        var outcome = await backendEnded.Task.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.That(outcome, Is.EqualTo("ConnectionReset"), "the client's reset should reach the backend as a reset");
        Assert.That(ProxyProcess.Eventually(() => proxy.CountDescriptors() == baseline, TimeSpan.FromSeconds(10)), Is.True,
            $"descriptors: {proxy.CountDescriptors()}, before: {baseline}");
        Assert.That(proxy.HasExited, Is.False);
    }

    [Test, CancelAfter(60_000)]
    public async Task BackendResetMidStreamClosesBothSidesAndLeaksNothing()
    {
        using var backend = TestBackend.Tcp(async socket =>
        {
            if (await EchoIfWarmUp(socket))
                return;
            await TestBackend.SendAll(socket, new byte[4 << 20]);
            socket.LingerState = new LingerOption(true, 0);
            socket.Close(); // RST
        });
        using var proxy = ProxyProcess.Activated(backend.Target);
        var baseline = await proxy.WarmUpAndCountDescriptors();

        using (var client = proxy.Connect())
        {
            await TestBackend.SendAll(client, new byte[] { 1 });
            long received = 0;
            string ending;
            try
            {
                received = (await TestBackend.ReceiveAll(client).WaitAsync(TimeSpan.FromSeconds(20))).Bytes;
                ending = "end of stream";
            }
            catch (SocketException e)
            {
                ending = e.SocketErrorCode.ToString();
            }
            Assert.That(ending, Is.EqualTo("ConnectionReset"), "the backend's reset should reach the client as a reset");
            Assert.That(received, Is.LessThanOrEqualTo(4 << 20));
        }
        Assert.That(ProxyProcess.Eventually(() => proxy.CountDescriptors() == baseline, TimeSpan.FromSeconds(10)), Is.True,
            $"descriptors: {proxy.CountDescriptors()}, before: {baseline}");
        Assert.That(proxy.HasExited, Is.False);
    }

    [Test, CancelAfter(60_000)]
    public async Task OutOfDescriptorsPausesAcceptingWithoutSpinningAndServesTheWaitingClientLater()
    {
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.Activated(backend.Target);
        await proxy.WarmUpAndCountDescriptors();
        var (_, pipesBefore) = proxy.CountDescriptors();
        int open = Directory.GetFiles($"/proc/{proxy.Pid}/fd").Length;
        // The first connection carries a bulk stream each way, so it holds all a connection can: client, backend and
        // one splice pipe per direction (a short exchange would open no pipe: RelayBuffer).
        using var first = proxy.Connect();
        var firstEcho = TestBackend.ReceiveExactly(first, 1 << 20);
        await TestBackend.SendAll(first, new byte[1 << 20]);
        Assert.That(await firstEcho, Is.EqualTo(1 << 20));
        Assert.That(proxy.CountDescriptors().Pipes, Is.EqualTo(pipesBefore + 4), "the bulk connection did not splice both ways");
        // Room for that one relayed connection (6 descriptors) above the reserve the proxy keeps free for the runtime
        // (DescriptorBudget), and not for a second.
        TestProcesses.SetDescriptorLimit(proxy.Pid, open + 6 + IoMux.SocketProxy.DescriptorBudget.Reserve + 2);

        using var second = proxy.Connect(); // accepted by the kernel into the backlog
        await TestBackend.SendAll(second, new byte[100]);
        proxy.WaitForLog("Out of descriptors", TimeSpan.FromSeconds(10));
        long cpuBefore = proxy.CpuTicks();
        await Task.Delay(1000);
        long cpuUsed = proxy.CpuTicks() - cpuBefore;
        Assert.That(cpuUsed, Is.LessThan(30), "the proxy spins while out of descriptors (CPU ticks in one second)");
        Assert.That(second.Available, Is.EqualTo(0), "the second client was relayed although no descriptor was free");

        first.Dispose();
        second.Shutdown(SocketShutdown.Send);
        var (bytes, _) = await TestBackend.ReceiveAll(second).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.That(bytes, Is.EqualTo(100), "the waiting client was not served once descriptors were free");
        Assert.That(proxy.CountOccurrences("Out of descriptors"), Is.EqualTo(1), proxy.Log);
    }

    /// <summary>Issue 13 item 5 (docs/reliability/descriptor-limit.md): held at its descriptor limit while clients
    /// keep coming, the proxy survives a few seconds and then aborts ("Out of memory.", exit 134): the runtime
    /// starts threads on demand (the tiering worker, again after 4 s idle, and others), and every one needs a
    /// pipe(2) while it starts, and the failure is thrown out of whichever managed call asked for the thread. This
    /// squeezes it as tools/fdlimit/stress.sh does, past the worker's idle exit, and expects it alive and relaying
    /// afterwards (docs/reliability/descriptor-limit.md: the descriptor budget).</summary>
    [Test, CancelAfter(60_000)]
    public async Task HeldAtTheDescriptorLimitWhileClientsKeepComingTheProxyDoesNotAbort()
    {
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.Activated(backend.Target);
        await proxy.WarmUpAndCountDescriptors();
        for (int round = 0; round < 2; round++)
        {
            int open = Directory.GetFiles($"/proc/{proxy.Pid}/fd").Length;
            TestProcesses.SetDescriptorLimit(proxy.Pid, open + 1);
            var clients = new List<Socket>();
            try
            {
                var until = Stopwatch.StartNew();
                while (until.Elapsed < TimeSpan.FromSeconds(5) && !proxy.HasExited) // the tiering worker idles out after 4 s
                {
                    var client = proxy.Connect(); // completes in the backlog; the proxy relays at most one of them
                    clients.Add(client);
                    await TestBackend.SendAll(client, new byte[10]);
                    await Task.Delay(100);
                }
            }
            finally
            {
                foreach (var client in clients)
                    client.Dispose();
            }
            TestProcesses.SetDescriptorLimit(proxy.Pid, open + 200);
            Assert.That(proxy.HasExited, Is.False, $"the proxy exited at its descriptor limit: {proxy.Log}");
            using var again = proxy.Connect();
            await TestBackend.SendAll(again, new byte[100]);
            again.Shutdown(SocketShutdown.Send);
            var (bytes, _) = await TestBackend.ReceiveAll(again).WaitAsync(TimeSpan.FromSeconds(20));
            Assert.That(bytes, Is.EqualTo(100), "not relaying after the limit was raised again");
        }
        Assert.That(proxy.Log, Does.Not.Contain("Out of memory"));
    }

    /// <summary>Reads the first byte; the warm-up connection (byte 42) is echoed and true returned.</summary>
    private static async Task<bool> EchoIfWarmUp(Socket socket)
    {
        var first = new byte[1];
        if (await socket.ReceiveAsync(first, SocketFlags.None) == 0)
            return true;
        if (first[0] != 42)
            return false;
        await TestBackend.SendAll(socket, first);
        await TestBackend.Echo(socket);
        return true;
    }
}
