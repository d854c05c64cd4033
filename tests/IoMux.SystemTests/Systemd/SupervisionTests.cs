using System.Diagnostics;
using System.Text;
using IoMux.Tests.Proxy;

namespace IoMux.Tests.Systemd;

/// <summary>The proxy and the iomux servers under a notify socket made here, started as systemd starts a
/// <c>Type=notify</c> service with <c>WatchdogSec=</c>: READY=1 with a status once listening, WATCHDOG=1 every half
/// of WATCHDOG_USEC from the main process, none while the process is stopped, STOPPING=1 on SIGTERM.</summary>
[Category("System")]
[NonParallelizable]
public sealed class SupervisionTests
{
    private const int SIGSTOP = 19, SIGCONT = 18;
    private const int WatchdogUsec = 1_000_000;

    [Test, CancelAfter(60_000)]
    public async Task TheActivatedProxyIsReadyPingsItsWatchdogAndSaysWhenItStops(CancellationToken token)
    {
        using var manager = NotifySocket.AtPath();
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        using var proxy = ProxyProcess.ActivatedWith(new Dictionary<string, string>
        {
            ["NOTIFY_SOCKET"] = manager.Address,
            ["WATCHDOG_USEC"] = WatchdogUsec.ToString(),
        }, backend.Target);
        using (var client = proxy.Connect()) // systemd-socket-activate starts the proxy on the first connection
        {
            await TestBackend.SendAll(client, new byte[] { 7 }).WaitAsync(token);
            var ready = manager.ReceiveUntil(m => m.Text.StartsWith("READY=1", StringComparison.Ordinal), TimeSpan.FromSeconds(20), "READY=1").Last();
            Assert.That(ready.Text, Is.EqualTo($"READY=1\nSTATUS=Relaying 1 listening socket(s) to {backend.Target}"));
            // systemd-socket-activate execs the proxy: the pid it started is the proxy's, and the sender systemd sees.
            Assert.That(ready.SenderPid, Is.EqualTo(proxy.Pid));
        }
        AssertPingsEveryHalfTimeout(manager, proxy.Pid, proxy.Log);

        proxy.Signal(ProxyProcess.SIGTERM);
        var stopping = manager.ReceiveUntil(m => m.Text.StartsWith("STOPPING=1", StringComparison.Ordinal), TimeSpan.FromSeconds(10), "STOPPING=1").Last();
        Assert.That(stopping.Text, Does.StartWith("STOPPING=1\nSTATUS="));
        Assert.That(proxy.WaitForExit(TimeSpan.FromSeconds(20)), Is.True);
        Assert.That(proxy.ExitCode, Is.EqualTo(0), proxy.Log);
    }

    [Test] // no CancelAfter: every receive and the exit have their own deadlines
    public void IomuxHelloPingsForItsOwnPidStopsPingingWhileStoppedAndSaysWhenItStops()
    {
        using var manager = NotifySocket.Abstract();
        int port = ProxyProcess.FreePort();
        // WATCHDOG_PID=$$ then exec: the pid the shell had is the server's, as systemd sets it for the main process.
        using var server = ServerProcess.Start(manager.Address, "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", "hello", "--port", port.ToString(), "--threads", "2");
        var ready = manager.ReceiveUntil(m => m.Text.StartsWith("READY=1", StringComparison.Ordinal), TimeSpan.FromSeconds(20), "READY=1").Last();
        Assert.That(ready.Text, Is.EqualTo($"READY=1\nSTATUS=Listening on 127.0.0.1:{port} with 2 loop thread(s)"));
        Assert.That(ready.SenderPid, Is.EqualTo(server.Pid));
        AssertPingsEveryHalfTimeout(manager, server.Pid, server.Log);

        Assert.That(TestProcesses.Signal(server.Pid, SIGSTOP), Is.EqualTo(0));
        try
        {
            manager.ReceiveFor(TimeSpan.FromMilliseconds(100)); // one already in flight
            Assert.That(manager.ReceiveFor(TimeSpan.FromMilliseconds(1500)), Is.Empty, "a stopped process pinged");
        }
        finally
        {
            TestProcesses.Signal(server.Pid, SIGCONT);
        }
        manager.ReceiveUntil(m => m.Text == "WATCHDOG=1", TimeSpan.FromSeconds(3), "a ping after SIGCONT");

        Assert.That(TestProcesses.Signal(server.Pid, ProxyProcess.SIGTERM), Is.EqualTo(0));
        var stopping = manager.ReceiveUntil(m => m.Text.StartsWith("STOPPING=1", StringComparison.Ordinal), TimeSpan.FromSeconds(10), "STOPPING=1").Last();
        Assert.That(stopping.SenderPid, Is.EqualTo(server.Pid));
        Assert.That(server.WaitForExit(), Is.EqualTo(0), server.Log);
    }

    [Test] // no CancelAfter: every receive and the exit have their own deadlines
    public void AWatchdogMeantForAnotherProcessIsNotPinged()
    {
        using var manager = NotifySocket.AtPath();
        int port = ProxyProcess.FreePort();
        // The shell's parent (this test) is not the server: sd_watchdog_enabled says "not for us".
        using var server = ServerProcess.Start(manager.Address, $"WATCHDOG_PID={Environment.ProcessId} exec \"$0\" \"$@\"", "echo", "--port", port.ToString(), "--threads", "1");
        manager.ReceiveUntil(m => m.Text.StartsWith("READY=1", StringComparison.Ordinal), TimeSpan.FromSeconds(20), "READY=1");
        Assert.That(manager.ReceiveFor(TimeSpan.FromMilliseconds(1500)), Is.Empty, "pinged a watchdog meant for another pid");
        Assert.That(TestProcesses.Signal(server.Pid, ProxyProcess.SIGTERM), Is.EqualTo(0));
        Assert.That(manager.ReceiveUntil(m => m.Text.StartsWith("STOPPING=1", StringComparison.Ordinal), TimeSpan.FromSeconds(10), "STOPPING=1"), Is.Not.Empty);
        Assert.That(server.WaitForExit(), Is.EqualTo(0), server.Log);
    }

    /// <summary>Four pings from <paramref name="pid"/>, about half of WATCHDOG_USEC apart (each in sd-event's window of
    /// 1/2 to 3/4 of the timeout after the previous round, with scheduling slack on a shared machine), never the
    /// whole timeout apart.</summary>
    private static void AssertPingsEveryHalfTimeout(NotifySocket manager, int pid, string log)
    {
        var pings = new List<NotifyMessage>();
        for (int i = 0; i < 4; i++)
            pings.Add(manager.ReceiveUntil(m => m.Text == "WATCHDOG=1", TimeSpan.FromSeconds(3), $"ping {i + 1}\n{log}").Last());
        Assert.That(pings.Select(p => p.SenderPid), Is.All.EqualTo(pid));
        var gaps = pings.Zip(pings.Skip(1), (a, b) => (b.ArrivedAt - a.ArrivedAt).TotalMilliseconds).ToList();
        Assert.That(gaps, Is.All.InRange(220.0, 950.0), string.Join(", ", gaps));
        Assert.That(gaps.Average(), Is.InRange(420.0, 650.0), string.Join(", ", gaps));
    }

    /// <summary>`iomux COMMAND` started through /bin/sh -c SCRIPT (which ends in exec), with NOTIFY_SOCKET and
    /// WATCHDOG_USEC set, its stderr collected.</summary>
    private sealed class ServerProcess : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _log = new();

        private ServerProcess(Process process)
        {
            _process = process;
            _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
            _process.BeginErrorReadLine();
        }

        public static ServerProcess Start(string notifySocket, string script, params string[] command)
        {
            var start = new ProcessStartInfo("/bin/sh") { RedirectStandardError = true, UseShellExecute = false };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add(script);
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "IoMux.Cli"));
            foreach (var argument in command)
                start.ArgumentList.Add(argument);
            start.Environment["NOTIFY_SOCKET"] = notifySocket;
            start.Environment["WATCHDOG_USEC"] = WatchdogUsec.ToString();
            return new ServerProcess(Process.Start(start)!);
        }

        public int Pid => _process.Id;

        public string Log { get { lock (_log) return _log.ToString(); } }

        public int WaitForExit()
        {
            Assert.That(_process.WaitForExit(15_000), Is.True, "the server did not exit");
            _process.WaitForExit(); // flushes the log's handlers: the server has exited, and it starts no child that could hold its stderr
            return _process.ExitCode;
        }

        public void Dispose()
        {
            if (!_process.HasExited)
                _process.Kill();
            _process.Dispose();
        }
    }
}
