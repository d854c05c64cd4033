using System.Diagnostics;
using IoMux.Loop;

namespace IoMux.Tests.Systemd;

/// <summary>The notifier against a notify socket made here, as systemd makes its own: what arrives, from whom,
/// at a path and at an abstract name; sd_watchdog_enabled's rules for the watchdog variables.</summary>
public sealed class SdNotifierTests
{
    private static readonly string[] Kinds = ["path", "abstract"];

    private static NotifySocket MakeSocket(string kind) => kind == "path" ? NotifySocket.AtPath() : NotifySocket.Abstract();

    [TestCaseSource(nameof(Kinds))] // every receive has its own deadline
    public void EachMessageArrivesAsOneDatagramFromThisProcess(string kind)
    {
        using var manager = MakeSocket(kind);
        using var notifier = new SdNotifier(manager.Address);
        notifier.Ready("Listening on 127.0.0.1:80");
        notifier.Status("two\nlines");
        Assert.That(notifier.Ping(), Is.True);
        notifier.Stopping();
        notifier.Notify("EXTEND_TIMEOUT_USEC=5000000");

        var received = Enumerable.Range(0, 5).Select(_ => manager.Receive(TimeSpan.FromSeconds(5))).ToList();
        Assert.That(received.Select(m => m?.Text), Is.EqualTo(new[]
        {
            "READY=1\nSTATUS=Listening on 127.0.0.1:80",
            "STATUS=two lines", // a newline would have started another assignment
            "WATCHDOG=1",
            "STOPPING=1",
            "EXTEND_TIMEOUT_USEC=5000000",
        }));
        Assert.That(received.Select(m => m!.Value.SenderPid), Is.All.EqualTo(Environment.ProcessId), "the kernel's credentials name another sender");
        Assert.That(notifier.Sent, Is.EqualTo(5));
        Assert.That(notifier.Failed, Is.Zero);
    }

    [Test]
    public void APingAllocatesNothing()
    {
        using var manager = NotifySocket.Abstract();
        using var notifier = new SdNotifier(manager.Address);
        notifier.Ping(); // first call: JIT and the P/Invoke stub
        manager.Receive(TimeSpan.FromSeconds(5));
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 8; i++) // under net.unix.max_dgram_qlen (10 by default): a ping never waits for room
            notifier.Ping();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(allocated, Is.Zero);
        Assert.That(manager.ReceiveFor(TimeSpan.FromMilliseconds(300)), Has.Count.EqualTo(8));
    }

    [Test]
    public void ASocketNobodyListensOnIsAnErrorNamingTheErrnoButAPingOnlyFails()
    {
        string path = Path.Combine(Path.GetTempPath(), $"iomux-nobody-{Guid.NewGuid():N}.sock");
        using (var atPath = new SdNotifier(path))
        {
            var error = Assert.Throws<PosixException>(() => atPath.Ready());
            Assert.That(error!.ErrorName, Is.EqualTo("ENOENT"));
            Assert.That(error.Message, Does.Contain(path));
        }
        using var notifier = new SdNotifier($"@iomux-nobody-{Guid.NewGuid():N}");
        Assert.That(Assert.Throws<PosixException>(() => notifier.Stopping())!.ErrorName, Is.EqualTo("ECONNREFUSED"));
        Assert.That(notifier.Ping(), Is.False);
        Assert.That(notifier.Failed, Is.EqualTo(2));
        Assert.That(notifier.Sent, Is.Zero);
    }

    [TestCase("relative/path")]
    [TestCase("@")]
    [TestCase("vsock:2:1234")]
    [TestCase("")]
    public void AnAddressThatIsNotAnAbsolutePathOrAbstractNameIsRefused(string address) =>
        Assert.Throws<ArgumentException>(() => new SdNotifier(address));

    [Test]
    public void APathTooLongForSockaddrUnIsRefused() =>
        Assert.Throws<ArgumentException>(() => new SdNotifier("/" + new string('x', 200)));

    [Test]
    public void UseAfterDisposeThrows()
    {
        var notifier = new SdNotifier("@iomux-disposed");
        notifier.Dispose();
        Assert.Throws<ObjectDisposedException>(() => notifier.Ping());
    }

    // sd_watchdog_enabled(3): WATCHDOG_USEC unset: no watchdog; set: a positive count of microseconds that is not
    // "infinity"; WATCHDOG_PID, when set, must name this process, else the watchdog is someone else's.
    [TestCase(null, null, null)]
    [TestCase("1000000", null, 1000.0)]
    [TestCase("1500", "4242", 1.5)]
    [TestCase("1000000", "4243", null)]
    public void TheWatchdogTimeoutFollowsSdWatchdogEnabled(string? usec, string? pid, double? milliseconds) =>
        Assert.That(SdNotifier.WatchdogTimeout(usec, pid, ownPid: 4242)?.TotalMilliseconds, Is.EqualTo(milliseconds));

    [TestCase("0", null)]
    [TestCase("18446744073709551615", null)] // USEC_INFINITY
    [TestCase("-5", null)]
    [TestCase("1s", null)]
    [TestCase("1000000", "self")]
    [TestCase("1000000", "0")]
    public void MalformedWatchdogVariablesAreAFormatError(string usec, string? pid) =>
        Assert.Throws<FormatException>(() => SdNotifier.WatchdogTimeout(usec, pid, ownPid: 4242));

    /// <summary>systemd-notify (systemd's own client, the same sd_notify code) as the oracle: sent to the same
    /// NOTIFY_SOCKET value, its datagram reaches the test's socket (so the address is parsed as systemd parses
    /// it) and holds exactly the bytes the notifier sends for the same request.</summary>
    [TestCaseSource(nameof(Kinds)), Category("System")] // every wait has its own deadline
    public void SystemdNotifySendsTheSameBytesToTheSameAddress(string kind)
    {
        using var manager = MakeSocket(kind);
        var start = new ProcessStartInfo("systemd-notify") { UseShellExecute = false, RedirectStandardError = true };
        start.ArgumentList.Add("--ready");
        start.ArgumentList.Add("--status=Relaying 1 listening socket(s) to 127.0.0.1:8080");
        start.Environment["NOTIFY_SOCKET"] = manager.Address;
        using var oracle = Process.Start(start)!;
        var fromSystemd = manager.Receive(TimeSpan.FromSeconds(10));
        Assert.That(fromSystemd, Is.Not.Null, "systemd-notify's datagram did not arrive");
        // systemd-notify then waits for the manager with BARRIER=1 (a pipe, which the manager closes): not state.
        Assert.That(manager.Receive(TimeSpan.FromSeconds(10))?.Text, Is.EqualTo("BARRIER=1"));
        Assert.That(oracle.WaitForExit(10_000), Is.True);
        Assert.That(oracle.ExitCode, Is.EqualTo(0), oracle.StandardError.ReadToEnd());

        using var notifier = new SdNotifier(manager.Address);
        notifier.Ready("Relaying 1 listening socket(s) to 127.0.0.1:8080");
        Assert.That(manager.Receive(TimeSpan.FromSeconds(5))?.Text, Is.EqualTo(fromSystemd!.Value.Text));
    }
}
