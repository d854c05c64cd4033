using IoMux.Loop;

namespace IoMux.Tests.Systemd;

/// <summary>The watchdog pinged by loops themselves: every half timeout while they iterate, never while one of
/// them is stuck in a callback.</summary>
// No test here has a CancelAfter: every wait (ReceiveFor, ReceiveUntil, the loop thread's Join) has its own deadline.
[NonParallelizable] // timing: the pings' period is asserted
public sealed class LoopWatchdogTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(400);
    private NotifySocket _manager = null!;
    private SdNotifier _notifier = null!;
    private LoopWatchdog _watchdog = null!;

    [SetUp]
    public void CreateManagerAndWatchdog()
    {
        _manager = NotifySocket.Abstract();
        _notifier = new SdNotifier(_manager.Address);
        _watchdog = new LoopWatchdog(_notifier, Timeout);
    }

    [TearDown]
    public void DisposeManager()
    {
        _notifier.Dispose();
        _manager.Dispose();
    }

    /// <summary>A loop running on its own thread until disposed.</summary>
    private sealed class RunningLoop : IDisposable
    {
        private readonly Thread _thread;

        public RunningLoop(Action<EventLoop> setUp)
        {
            Loop = new EventLoop(PollerFactory.Create());
            setUp(Loop);
            _thread = new Thread(() => Loop.Run()) { IsBackground = true, Name = "watchdog test loop" };
            _thread.Start();
        }

        public EventLoop Loop { get; }

        public void Dispose()
        {
            Loop.Exit();
            Assert.That(_thread.Join(TimeSpan.FromSeconds(10)), Is.True, "the loop did not exit");
            Loop.Dispose();
        }
    }

    [Test]
    public void AnIteratingLoopPingsEveryHalfTimeout()
    {
        using (new RunningLoop(loop => _watchdog.Attach(loop)))
        {
            var pings = _manager.ReceiveFor(TimeSpan.FromMilliseconds(2100));
            Assert.That(pings.Select(p => p.Text), Is.All.EqualTo("WATCHDOG=1"));
            // Due every 200 ms (half the timeout), each in sd-event's window of 1/2 to 3/4 of the timeout after the
            // previous round: two pings are between 100 and 300 ms apart (plus scheduling), never a timeout apart.
            Assert.That(pings, Has.Count.InRange(8, 11));
            var gaps = pings.Zip(pings.Skip(1), (a, b) => (b.ArrivedAt - a.ArrivedAt).TotalMilliseconds).ToList();
            Assert.That(gaps, Is.All.InRange(90.0, 390.0), string.Join(", ", gaps));
            Assert.That(gaps.Average(), Is.InRange(170.0, 240.0), string.Join(", ", gaps));
            Assert.That(_watchdog.Pings, Is.InRange(pings.Count, pings.Count + 1)); // one more may be on its way
        }
    }

    /// <summary>A check-in and its ping add nothing to what an iteration allocates: the same loop with a plain
    /// periodic timer of the same period is the baseline (zero in Release, measured by a probe; a Debug build's
    /// iteration allocates a little of its own, the same with or without the watchdog).</summary>
    [Test]
    public void ACheckInAndItsPingAllocateNothing()
    {
        var checkIn = TimeSpan.FromMilliseconds(20);
        var watchdog = new LoopWatchdog(_notifier, checkIn * 2);
        long withWatchdog = BytesPerIteration(loop => watchdog.Attach(loop));
        long pings = watchdog.Pings;
        long baseline = BytesPerIteration(loop => loop.AddTimer(checkIn, _ => { }, accuracy: checkIn / 2, period: checkIn));
        Assert.That(pings, Is.GreaterThanOrEqualTo(8), "the loop did not ping");
        Assert.That(withWatchdog, Is.EqualTo(baseline));
    }

    /// <summary>Bytes allocated per iteration of a loop set up by <paramref name="setUp"/>, after a warm-up, with
    /// the pings received on the way (a full queue would make them fail, another path).</summary>
    private long BytesPerIteration(Action<EventLoop> setUp)
    {
        using var loop = new EventLoop(PollerFactory.Create());
        setUp(loop);
        for (int i = 0; i < 10; i++) // warm: JIT, the P/Invoke stub, the timer heap
            loop.RunOnce(TimeSpan.FromMilliseconds(50));
        const int Iterations = 12;
        long bytes = 0;
        for (int i = 0; i < Iterations; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            loop.RunOnce(TimeSpan.FromMilliseconds(50));
            bytes += GC.GetAllocatedBytesForCurrentThread() - before;
            while (_manager.Receive(TimeSpan.Zero) is not null)
            {
            }
        }
        return bytes / Iterations;
    }

    /// <summary>sd_event_set_watchdog pings at once when it enables the watchdog (issue 22, docs/LOOP.md row 19): with a
    /// 10 s timeout, whose first timer ping is 5 s away, the ping arrives before the loop ever ran.</summary>
    [Test]
    public void EnablingTheWatchdogPingsAtOnce()
    {
        string? usec = Environment.GetEnvironmentVariable(SdNotifier.WatchdogUsecVariable);
        string? pid = Environment.GetEnvironmentVariable(SdNotifier.WatchdogPidVariable);
        Environment.SetEnvironmentVariable(SdNotifier.WatchdogUsecVariable, "10000000");
        Environment.SetEnvironmentVariable(SdNotifier.WatchdogPidVariable, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        try
        {
            using var loop = new EventLoop(PollerFactory.Create());
            var watchdog = loop.EnableWatchdog(_notifier);
            Assert.That(watchdog, Is.Not.Null);
            var pings = _manager.ReceiveFor(TimeSpan.FromMilliseconds(500));
            Assert.That(pings.Select(p => p.Text), Is.EqualTo(new[] { "WATCHDOG=1" }));
            Assert.That(watchdog!.Pings, Is.EqualTo(1));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SdNotifier.WatchdogUsecVariable, usec);
            Environment.SetEnvironmentVariable(SdNotifier.WatchdogPidVariable, pid);
        }
    }

    [Test]
    public void ALoopStuckInACallbackSendsNoPingUntilItRunsAgain()
    {
        using var running = new RunningLoop(loop => _watchdog.Attach(loop));
        _manager.ReceiveUntil(m => m.Text == "WATCHDOG=1", TimeSpan.FromSeconds(5), "first ping");
        AssertNoPingWhileStuck(running.Loop);
    }

    /// <summary>Blocks <paramref name="loop"/>'s thread in a callback: no ping may come (after one that was already
    /// due), until it is released; then the pings resume.</summary>
    private void AssertNoPingWhileStuck(EventLoop loop)
    {
        using var release = new ManualResetEventSlim();
        loop.Post(() => release.Wait(TimeSpan.FromSeconds(10))); // the loop's thread blocks here
        _manager.ReceiveFor(TimeSpan.FromMilliseconds(350)); // a ping already due when the callback started may still come
        Assert.That(_manager.ReceiveFor(TimeSpan.FromMilliseconds(1200)), Is.Empty, "a stuck loop did not stop the pings");
        release.Set();
        _manager.ReceiveUntil(m => m.Text == "WATCHDOG=1", TimeSpan.FromSeconds(2), "a ping after the loop ran again");
    }

    [Test]
    public void WithSeveralLoopsOneStuckLoopStopsThePings()
    {
        using var first = new RunningLoop(_ => { });
        using var second = new RunningLoop(_ => { });
        _watchdog.AttachLater(first.Loop);
        _watchdog.AttachLater(second.Loop);
        var pings = _manager.ReceiveFor(TimeSpan.FromMilliseconds(1100));
        Assert.That(pings, Has.Count.InRange(3, 6), "two running loops: one ping per half timeout");

        AssertNoPingWhileStuck(second.Loop); // the first loop keeps iterating meanwhile
    }

    [Test]
    public void ALoopThatLeavesNoLongerHoldsThePingsBack()
    {
        using var running = new RunningLoop(loop => _watchdog.Attach(loop));
        var idle = new EventLoop(PollerFactory.Create()); // never runs: as good as stuck
        var membership = _watchdog.Attach(idle);
        Assert.That(_manager.ReceiveFor(TimeSpan.FromMilliseconds(800)), Is.Empty, "a member that never ran was ignored");
        membership.Dispose();
        idle.Dispose();
        _manager.ReceiveUntil(m => m.Text == "WATCHDOG=1", TimeSpan.FromSeconds(2), "a ping once the idle loop left");
    }
}
