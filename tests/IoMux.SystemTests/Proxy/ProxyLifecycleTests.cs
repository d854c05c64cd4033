using System.Diagnostics;
using System.Net.Sockets;

namespace IoMux.Tests.Proxy;

/// <summary>The proxy's life: the connection cap holds clients in the backlog instead of dropping them, an idle
/// proxy exits, SIGTERM stops accepting and lets active connections finish (for a bounded time).</summary>
[Category("System")]
[NonParallelizable]
public sealed class ProxyLifecycleTests
{
    /// <summary>systemd-socket-proxyd's limit (issue 21): its check is "more than -c open", so -c 1 relays two
    /// clients; the third is accepted and closed at once (end of stream, well before any timeout) with systemd's
    /// line at warning priority, and a client after a slot freed is relayed again.</summary>
    [Test, CancelAfter(60_000)]
    public async Task PastTheConnectionLimitAClientIsClosedAtOnceAsInSystemd(CancellationToken cancel)
    {
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.ActivatedWith(new Dictionary<string, string> { ["JOURNAL_STREAM"] = "8:1" }, "-c", "1", backend.Target);
        using var first = proxy.Connect();
        using var second = proxy.Connect();
        foreach (var client in new[] { first, second })
            Assert.That(await EchoOnce(client, TimeSpan.FromSeconds(10), test: cancel), Is.True, "a client within systemd's limit (-c + 1) was not relayed");

        using (var third = proxy.Connect())
        {
            var clock = Stopwatch.StartNew();
            var (bytes, _) = await TestBackend.ReceiveAll(third, cancel).WaitAsync(TimeSpan.FromSeconds(5), cancel);
            Assert.That(bytes, Is.EqualTo(0));
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(3)), "the refused client was not closed at once");
        }
        proxy.WaitForLog("<4>Hit connection limit, refusing connection.", TimeSpan.FromSeconds(5));
        Assert.That(backend.Accepted, Is.EqualTo(2));

        first.Dispose();
        // The proxy ends the first connection once the backend has echoed its end of stream too, which may come
        // after the next client's connect (refused then: a reset, since its bytes were never read): a few tries, bounded.
        bool relayed = false;
        for (int attempt = 0; attempt < 20 && !relayed; attempt++)
        {
            using var next = proxy.Connect();
            try
            {
                relayed = await EchoOnce(next, TimeSpan.FromSeconds(5), test: cancel);
            }
            catch (SocketException)
            {
            }
            if (!relayed)
                await Task.Delay(100, cancel);
        }
        Assert.That(relayed, Is.True, "no client was relayed after a slot freed");
    }

    /// <summary>IoMux's own behaviour, --at-limit=queue: at exactly -c open, clients wait in the backlog.</summary>
    [Test, CancelAfter(60_000)]
    public async Task AtTheConnectionCapTheNextClientWaitsUntilOneEnds(CancellationToken cancel)
    {
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.Activated("--connections-max=2", "--at-limit=queue", backend.Target);
        using var first = proxy.Connect();
        using var second = proxy.Connect();
        foreach (var client in new[] { first, second })
            Assert.That(await EchoOnce(client, TimeSpan.FromSeconds(10), test: cancel), Is.True, "a client under the cap was not relayed");

        using var third = proxy.Connect(); // completes in the kernel backlog; the proxy does not accept it yet
        await TestBackend.SendAll(third, new byte[] { 1, 2, 3 }, cancel);
        Assert.That(await EchoOnce(third, TimeSpan.FromMilliseconds(700), send: false, test: cancel), Is.False, "the third client was relayed past the cap");
        Assert.That(backend.Accepted, Is.EqualTo(2));

        first.Dispose();
        Assert.That(await EchoOnce(third, TimeSpan.FromSeconds(10), send: false, test: cancel), Is.True, "the waiting client was not relayed once a connection ended");
        Assert.That(backend.Accepted, Is.EqualTo(3));
    }

    [Test, CancelAfter(60_000)]
    public async Task ExitsWhenIdleForExitIdleTimeButNotWhileAConnectionIsOpen(CancellationToken cancel)
    {
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.Activated("--exit-idle-time=1s", backend.Target);
        using (var client = proxy.Connect())
        {
            Assert.That(await EchoOnce(client, TimeSpan.FromSeconds(10), test: cancel), Is.True);
            await Task.Delay(2500, cancel); // longer than the idle time, with a connection open
            Assert.That(proxy.HasExited, Is.False, "the proxy exited with a connection open");
            Assert.That(await EchoOnce(client, TimeSpan.FromSeconds(10), test: cancel), Is.True);
        }
        var clock = Stopwatch.StartNew();
        Assert.That(proxy.WaitForExit(TimeSpan.FromSeconds(10)), Is.True, "the idle proxy did not exit");
        Assert.That(proxy.ExitCode, Is.EqualTo(0));
        Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromMilliseconds(500)), "the proxy exited before the idle time");
        Assert.That(proxy.Log, Does.Contain("No connection for 1 s; exiting."));
    }

    /// <summary>"infinity" and spans past the loop's 292-year timer range wait for the connections too (they
    /// once overflowed the timer's nanoseconds into a deadline already passed, closing them at once).</summary>
    [TestCase("--drain-time=30s"), TestCase("--drain-time=infinity"), TestCase("--drain-time=1000y"), CancelAfter(60_000)]
    public async Task SigtermStopsAcceptingAndLetsActiveConnectionsFinish(string drainTime, CancellationToken cancel)
    {
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.Activated(drainTime, backend.Target);
        using var active = proxy.Connect();
        Assert.That(await EchoOnce(active, TimeSpan.FromSeconds(10), test: cancel), Is.True);

        proxy.Signal(ProxyProcess.SIGTERM);
        proxy.WaitForLog("Stopping: no new connections", TimeSpan.FromSeconds(10));
        Assert.Catch<SocketException>(() => proxy.Connect().Dispose(), "a new connection was accepted while stopping");
        Assert.That(await EchoOnce(active, TimeSpan.FromSeconds(10), test: cancel), Is.True, "the active connection stopped working");
        Assert.That(proxy.HasExited, Is.False);

        active.Shutdown(SocketShutdown.Send);
        Assert.That((await TestBackend.ReceiveAll(active, cancel)).Bytes, Is.EqualTo(0));
        Assert.That(proxy.WaitForExit(TimeSpan.FromSeconds(10)), Is.True, "the proxy did not exit after its last connection");
        Assert.That(proxy.ExitCode, Is.EqualTo(0));
    }

    [Test, CancelAfter(60_000)]
    public async Task SigtermClosesConnectionsStillActiveAfterTheDrainTime(CancellationToken cancel)
    {
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.Activated("--drain-time=1s", backend.Target);
        using var idle = proxy.Connect();
        Assert.That(await EchoOnce(idle, TimeSpan.FromSeconds(10), test: cancel), Is.True);

        var clock = Stopwatch.StartNew();
        proxy.Signal(ProxyProcess.SIGINT);
        Assert.That(proxy.WaitForExit(TimeSpan.FromSeconds(10)), Is.True);
        Assert.That(proxy.ExitCode, Is.EqualTo(0));
        Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromMilliseconds(800)), "the connection was not given its drain time");
        Assert.That((await TestBackend.ReceiveAll(idle, cancel).WaitAsync(TimeSpan.FromSeconds(5))).Bytes, Is.EqualTo(0), "the client was not closed");
        Assert.That(proxy.Log, Does.Contain("closing 1 connection(s) still active"));
    }

    [Test, CancelAfter(60_000)]
    public async Task SocketNamesFromListenFdNamesAreRead(CancellationToken cancel)
    {
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.ActivatedWithOptions(new Dictionary<string, string> { ["SYSTEMD_LOG_LEVEL"] = "debug" },
            ["--fdname=web"], backend.Target);
        using var client = proxy.Connect();
        Assert.That(await EchoOnce(client, TimeSpan.FromSeconds(10), test: cancel), Is.True);
        proxy.WaitForLog("Received fd 3 (web) by socket activation.", TimeSpan.FromSeconds(5));
    }

    /// <summary>Sends three bytes (unless <paramref name="send"/> is false) and waits for three back.</summary>
    /// <remarks>False when <paramref name="timeout"/> passes; the test's own token (CancelAfter) throws instead.</remarks>
    private static async Task<bool> EchoOnce(Socket client, TimeSpan timeout, bool send = true, CancellationToken test = default)
    {
        if (send)
            await TestBackend.SendAll(client, new byte[] { 1, 2, 3 }, test);
        var buffer = new byte[3];
        int got = 0;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(test);
        cancel.CancelAfter(timeout);
        try
        {
            while (got < 3)
            {
                int n = await client.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None, cancel.Token);
                if (n == 0)
                    return false;
                got += n;
            }
            return true;
        }
        catch (OperationCanceledException) when (!test.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>stderr is a non-blocking pipe that is full (a stalled log reader): the proxy waits for room without
    /// spinning (it writes fd 2 itself, and waits in poll(2) as System.Console did), loses no line, and carries on
    /// once the reader drains.</summary>
    [Test]
    public unsafe void AFullNonBlockingStderrIsWaitedForWithoutSpinning()
    {
        TestProcesses.RequireTool("bash", "to hand the proxy a pipe as its stderr");
        IoMux.Interop.LibC.CreateNonBlockingPipe(out int readEnd, out int writeEnd);
        try
        {
            Assert.That(IoMux.Interop.LibC.fcntl(writeEnd, IoMux.Interop.LibC.F_SETFD, 0), Is.EqualTo(0), "the child must inherit the write end");
            var filler = new byte[4096];
            fixed (byte* bytes = filler)
                while (IoMux.Interop.LibC.write(writeEnd, bytes, (nuint)filler.Length) > 0)
                {
                }
            int port = ProxyProcess.FreePort();
            using var proxy = Process.Start(new ProcessStartInfo("bash",
                ["-c", $"exec \"$0\" --listen 127.0.0.1:{port} 127.0.0.1:9 2>&{writeEnd}", ProxyProcess.ProxyPath]))!;
            try
            {
                Thread.Sleep(1500); // started, and blocked on its first log line
                long before = TestProcesses.CpuTicks(proxy.Id);
                Thread.Sleep(1000);
                long used = TestProcesses.CpuTicks(proxy.Id) - before;
                Assert.That(proxy.HasExited, Is.False, "the proxy gave up on a full stderr");
                Assert.That(used, Is.LessThan(10), "the proxy spins while stderr is full (CPU ticks in one second)");

                var log = new System.Text.StringBuilder();
                var buffer = new byte[65536];
                void Drain()
                {
                    fixed (byte* bytes = buffer)
                        for (nint n; (n = IoMux.Interop.LibC.read(readEnd, bytes, (nuint)buffer.Length)) > 0;)
                            log.Append(System.Text.Encoding.UTF8.GetString(buffer, 0, (int)n).Replace("x", ""));
                }
                Drain();
                Thread.Sleep(500);
                TestProcesses.Signal(proxy.Id, ProxyProcess.SIGTERM);
                Assert.That(proxy.WaitForExit(10_000), Is.True, "the proxy did not stop after its stderr was drained");
                Assert.That(proxy.ExitCode, Is.EqualTo(0));
                Drain();
                Assert.That(log.ToString(), Does.Contain("Relaying 1 listening socket(s)").And.Contain("Relayed 0 connection(s)"));
            }
            finally
            {
                if (!proxy.HasExited)
                    proxy.Kill();
            }
        }
        finally
        {
            IoMux.Interop.LibC.CloseQuietly(readEnd);
            IoMux.Interop.LibC.CloseQuietly(writeEnd);
        }
    }
}
