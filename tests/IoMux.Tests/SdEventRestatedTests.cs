using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>
/// systemd's own sd-event tests (<c>src/libsystemd/sd-event/test-event.c</c>), restated against IoMux's loop: each
/// test is named after the <c>TEST(...)</c> it restates (<c>Basic_</c> is TEST(basic), and so on). Only what IoMux
/// does as sd-event does is restated (the porting features, exit-on-idle, prepare and destroy callbacks, the ratelimit
/// expire callback, signal exit and inotify, in SdEventRestatedTests.Porting.cs; the cases issue 22's decisions made
/// restatable, in SdEventRestatedTests.Decisions.cs); the cases IoMux lacks or does differently (child_wnowait,
/// child_autoreap_ebusy, siginfo payloads of signals) are rows of docs/LOOP.md's "Differences from sd-event" table
/// instead, and defer_add_post is restated to show its row's difference.
/// Where sd-event needs one <c>sd_event_run</c> per source and IoMux dispatches a batch, the test says so.
/// Non-parallel: the signal and child cases send signals to this process and spawn children.
/// </summary>
[NonParallelizable]
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed unsafe partial class SdEventRestatedTests(BackendProvider backend)
{
    private const int SIGUSR1 = 10, SIGKILL = 9, SIGUSR2 = 12, SIGURG = 23;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [DllImport("libc")] private static extern int waitpid(int pid, int* status, int options);

    private readonly List<int> _fds = [];

    [TearDown]
    public void CloseDescriptors()
    {
        foreach (int fd in _fds)
            LibC.close(fd);
        _fds.Clear();
    }

    private (int Read, int Write) Pipe()
    {
        LibC.CreateNonBlockingPipe(out int r, out int w);
        _fds.Add(r);
        _fds.Add(w);
        return (r, w);
    }

    private static void WriteByte(int fd)
    {
        byte b = (byte)'x';
        Assert.That((long)LibC.write(fd, &b, 1), Is.EqualTo(1L));
    }

    /// <summary>Iterates until <paramref name="done"/> holds, at most <see cref="Deadline"/>; false if it never did.</summary>
    private static bool RunUntil(EventLoop loop, Func<bool> done)
    {
        var clock = Stopwatch.StartNew();
        while (!done() && clock.Elapsed < Deadline)
            loop.RunOnce(TimeSpan.FromMilliseconds(200));
        return done();
    }

    /// <summary>A few short iterations in which nothing more may be dispatched.</summary>
    private static void RunIdle(EventLoop loop)
    {
        for (int i = 0; i < 3; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(20));
    }

    /// <summary>Run() bounded: a guard timer ends the loop with 99 if the test's own exit never comes.</summary>
    private static int RunGuarded(EventLoop loop)
    {
        loop.AddTimer(Deadline, _ => loop.Exit(99), description: "test guard");
        return loop.Run();
    }

    private static void RequireLinuxSignalNumbers()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("the signal numbers used here (SIGUSR1 10, SIGUSR2 12, SIGURG 23) are Linux's");
    }

    // ---- TEST(basic) ----

    /// <summary>TEST(basic), unref_handler: an I/O source destroys itself from its own handler, cleanly.</summary>
    [Test]
    public void Basic_AnIoSourceDisposesItselfFromItsOwnCallback()
    {
        using var loop = LoopTests.NewLoop(backend);
        var k = Pipe();
        int calls = 0;
        var t = loop.AddIo(k.Read, Interest.Readable, (s, _) => { s.Dispose(); calls++; });
        WriteByte(k.Write);
        Assert.That(RunUntil(loop, () => calls > 0), Is.True, "the source never fired");
        RunIdle(loop); // the byte is still unread: a source that survived its disposal would fire again
        Assert.That(calls, Is.EqualTo(1));
        Assert.That(t.IsDisposed, Is.True);
        Assert.That(loop.Poller.RegistrationCount, Is.Zero);
    }

    /// <summary>TEST(basic), io_handler 'd': a oneshot I/O source is triggered, re-enabled (oneshot) from its callback,
    /// triggered again, and switches itself off the second time.</summary>
    [Test]
    public void Basic_AOneshotIoSourceReEnabledFromItsCallbackFiresAgain()
    {
        using var loop = LoopTests.NewLoop(backend);
        var d = Pipe();
        int gotD = 0;
        var statesOnEntry = new List<SourceState>();
        var w = loop.AddIo(d.Read, Interest.Readable, (s, _) =>
        {
            statesOnEntry.Add(s.State); // off already: what the callback sets is what holds
            gotD++;
            s.State = gotD < 2 ? SourceState.Oneshot : SourceState.Off;
        }, state: SourceState.Oneshot);
        WriteByte(d.Write);
        Assert.That(RunUntil(loop, () => gotD >= 1), Is.True);
        Assert.That(gotD, Is.EqualTo(1));
        WriteByte(d.Write);
        Assert.That(RunUntil(loop, () => gotD >= 2), Is.True, "the re-enabled oneshot did not fire again");
        RunIdle(loop); // still readable, but off now
        Assert.That(gotD, Is.EqualTo(2));
        Assert.That(w.State, Is.EqualTo(SourceState.Off));
        Assert.That(statesOnEntry, Is.EqualTo(new[] { SourceState.Off, SourceState.Off }), "sd-event disables a oneshot before its callback");
    }

    /// <summary>TEST(basic), x/y/z: pipe 'a' at priority 99 (switches itself off), pipe 'b' oneshot at priority 0,
    /// timer 'c' oneshot at priority 50 and due at once. sd-event needs three sd_event_run calls and dispatches b,
    /// then c, then a (one source per run); IoMux dispatches the same order in one iteration (a batch, see the
    /// differences table). Afterwards none of the three fires again.</summary>
    [Test]
    public void Basic_PendingSourcesAreDispatchedInPriorityOrderAndOneshotsStayOff()
    {
        using var loop = LoopTests.NewLoop(backend);
        var a = Pipe();
        var b = Pipe();
        var order = new List<char>();
        var x = loop.AddIo(a.Read, Interest.Readable, (s, _) => { s.State = SourceState.Off; order.Add('a'); });
        var y = loop.AddIo(b.Read, Interest.Readable, (_, _) => order.Add('b'), state: SourceState.Oneshot);
        var z = loop.AddTimerAt(TimeSpan.Zero, _ => order.Add('c'), accuracy: TimeSpan.Zero);
        x.Priority = 99;
        Assert.That(x.Priority, Is.EqualTo(99));
        z.Priority = 50;
        Assert.That(z.State, Is.EqualTo(SourceState.Oneshot), "a timer without a period is oneshot, as sd_event_add_time's");
        WriteByte(a.Write);
        WriteByte(b.Write);
        Assert.That(order, Is.Empty);
        Assert.That(RunUntil(loop, () => order.Count >= 3), Is.True, $"dispatched: {string.Join(",", order)}");
        Assert.That(order, Is.EqualTo(new[] { 'b', 'c', 'a' }));
        Assert.That(loop.Iterations, Is.EqualTo(1), "IoMux dispatches every pending source of an iteration");
        WriteByte(a.Write);
        WriteByte(b.Write);
        RunIdle(loop);
        Assert.That(order, Has.Count.EqualTo(3));
        Assert.That((x.State, y.State, z.State), Is.EqualTo((SourceState.Off, SourceState.Off, SourceState.Off)));
    }

    /// <summary>TEST(basic), do_quit: the fired timer is moved to now + 200 ms and enabled again; it adds a oneshot
    /// defer, which adds a oneshot SIGUSR1 source and raises SIGUSR1, whose callback spawns a child exiting 78 and
    /// watches it; the child's callback exits the loop. The post source ran, the exit source ran, the loop returned
    /// 0. The child source owns its process, as sd-event's does (set_child_process_own). (sd-event's child waits for a
    /// sigqueue'd SIGUSR2 from sd_event_source_send_child_signal first; IoMux's <see cref="ChildSource.SendSignal"/> sends
    /// a plain signal, without sigqueue's value, and is tested on its own; here the child just exits 78, and the callback
    /// checks the status as sd-event's checks the siginfo's si_code and si_status.)</summary>
    [Test]
    public void Basic_ATimerDeferSignalChildChainEndsTheLoopAfterPostAndExitSources()
    {
        RequireLinuxSignalNumbers();
        using var loop = LoopTests.NewLoop(backend);
        var trail = new List<string>();
        ChildStatus childStatus = default;
        bool gotPost = false, gotExit = false;
        bool doQuit = false;
        var z = loop.AddTimerAt(TimeSpan.Zero, timer =>
        {
            trail.Add("timer");
            if (!doQuit)
                return;
            loop.AddDefer(defer =>
            {
                trail.Add("defer");
                loop.AddSignal((PosixSignal)SIGUSR1, (signal, _) =>
                {
                    trail.Add("signal");
                    int pid = LoopChildTests.Spawn("exit 78");
                    var child = loop.AddChild(pid, (_, status) =>
                    {
                        trail.Add("child");
                        childStatus = status;
                        loop.Exit(0);
                    });
                    child.OwnsProcess = true;
                    signal.Dispose();
                }, state: SourceState.Oneshot);
                Assert.That(TestProcesses.Signal(Environment.ProcessId, SIGUSR1), Is.Zero);
                defer.Dispose();
            }, state: SourceState.Oneshot);
        }, accuracy: TimeSpan.Zero, priority: 50);
        var q = loop.AddExit(_ => gotExit = true);
        Assert.That(RunUntil(loop, () => trail.Count > 0), Is.True);
        Assert.That(z.State, Is.EqualTo(SourceState.Off));

        doQuit = true;
        loop.AddPost(_ => gotPost = true);
        z.SetDeadline(loop.Now(LoopClock.Monotonic) + TimeSpan.FromMilliseconds(200));
        z.State = SourceState.Oneshot;
        var clock = Stopwatch.StartNew();
        Assert.That(RunGuarded(loop), Is.Zero, $"the chain stopped after: {string.Join(",", trail)}");
        Assert.That(clock.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(190)), "the moved timer waited for its new deadline");
        Assert.That(trail, Is.EqualTo(new[] { "timer", "timer", "defer", "signal", "child" }));
        Assert.That((childStatus.Code, childStatus.Status), Is.EqualTo((ChildStatusCode.Exited, 78)), "si_code CLD_EXITED, si_status 78");
        Assert.That((gotPost, gotExit), Is.EqualTo((true, true)));
        Assert.That(q.IsDisposed, Is.False);
    }

    /// <summary>TEST(basic)'s end, with exit_handler: sd_event_exit(e, code) from a callback makes sd_event_loop
    /// return that code after the exit sources ran (once); the loop is then finished.</summary>
    [Test]
    public void Basic_ExitFromACallbackEndsTheLoopWithItsCodeAfterTheExitSources()
    {
        using var loop = LoopTests.NewLoop(backend);
        int exits = 0;
        loop.AddExit(_ => exits++);
        loop.AddDefer(d => { d.Dispose(); loop.Exit(3); }, state: SourceState.Oneshot);
        Assert.That(RunGuarded(loop), Is.EqualTo(3));
        Assert.That(exits, Is.EqualTo(1));
        Assert.That(loop.RunOnce(TimeSpan.Zero), Is.False, "a finished loop does not iterate again");
        Assert.That(exits, Is.EqualTo(1), "the exit sources run once");
    }

    // ---- TEST(sd_event_now) ----

    /// <summary>TEST(sd_event_now): before the first iteration every clock already has a time, the live time as
    /// sd-event answers (LoopClockTests checks it is live, not the construction time).</summary>
    [Test]
    public void SdEventNow_EveryClockHasANowBeforeTheFirstIteration()
    {
        using var loop = LoopTests.NewLoop(backend);
        Assert.That(loop.Iterations, Is.Zero);
        Assert.That(loop.Now(LoopClock.Monotonic), Is.GreaterThan(TimeSpan.Zero));
        var wall = DateTime.UtcNow - DateTime.UnixEpoch;
        Assert.That(loop.Now(LoopClock.Realtime), Is.InRange(wall - TimeSpan.FromSeconds(10), wall + TimeSpan.FromSeconds(1)));
        if (OperatingSystem.IsLinux())
            Assert.That(loop.Now(LoopClock.Boottime), Is.GreaterThan(TimeSpan.Zero));
    }

    /// <summary>TEST(sd_event_now)'s second half: after sd_event_run(e, 0) the loop's now is the iteration's cached
    /// time, on every clock, and it moved forward with the clock.</summary>
    [Test]
    public void SdEventNow_AnIterationRefreshesNowOnEveryClock()
    {
        using var loop = LoopTests.NewLoop(backend);
        var clocks = OperatingSystem.IsLinux()
            ? new[] { LoopClock.Monotonic, LoopClock.Realtime, LoopClock.Boottime }
            : new[] { LoopClock.Monotonic, LoopClock.Realtime };
        var before = clocks.Select(loop.Now).ToArray();
        Thread.Sleep(30);
        loop.RunOnce(TimeSpan.Zero);
        var after = clocks.Select(loop.Now).ToArray();
        for (int i = 0; i < clocks.Length; i++)
            Assert.That(after[i] - before[i], Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(25)), $"{clocks[i]} was not refreshed");
        var mono = loop.Now(LoopClock.Monotonic);
        Assert.That(loop.Now(LoopClock.Monotonic), Is.EqualTo(mono), "cached: every caller of an iteration sees one now");
    }

    // ---- TEST(rtqueue) ----

    /// <summary>Sends the signals, then waits (bounded) until every source has its delivery counted, so that they
    /// are all pending in the same iteration.</summary>
    private static void SendAndAwaitPending(SignalSource[] sources, params int[] signals)
    {
        foreach (int signal in signals)
            Assert.That(TestProcesses.Signal(Environment.ProcessId, signal), Is.Zero);
        var clock = Stopwatch.StartNew();
        while (!sources.All(s => s.IsPending) && clock.Elapsed < Deadline)
            Thread.Sleep(1);
        Assert.That(sources.All(s => s.IsPending), Is.True, "a signal was not delivered");
    }

    /// <summary>TEST(rtqueue): three signal sources, the second at priority -10; signals sent u, v, s, v, s. The
    /// high-priority source runs first. sd-event dispatches one signal per run from the realtime queue (v, v, s,
    /// u); IoMux has no realtime queue (SIGRTMIN is the runtime's, and a source gets a count, not a siginfo), so
    /// it restates with ordinary signals: one iteration dispatches v, then u and s in the order they were added.</summary>
    [Test]
    public void Rtqueue_AHigherPrioritySignalSourceIsDispatchedFirst()
    {
        RequireLinuxSignalNumbers();
        using var loop = LoopTests.NewLoop(backend);
        var order = new List<string>();
        var u = loop.AddSignal((PosixSignal)SIGUSR2, (_, _) => order.Add("u"));
        var v = loop.AddSignal((PosixSignal)SIGUSR1, (_, _) => order.Add("v"));
        var s = loop.AddSignal((PosixSignal)SIGURG, (_, _) => order.Add("s"));
        v.Priority = -10;
        Assert.That(order, Is.Empty);
        SendAndAwaitPending([u, v, s], SIGUSR2, SIGUSR1, SIGURG);
        loop.RunOnce(TimeSpan.Zero);
        Assert.That(order, Is.EqualTo(new[] { "v", "u", "s" }));
    }

    /// <summary>TEST(rtqueue)'s last step: "the other SIGUSR2 is dropped, because the first one was still queued":
    /// a non-realtime signal that arrives again before its dispatch is one callback. IoMux's callback says how many
    /// deliveries it stands for.</summary>
    [Test]
    public void Rtqueue_AnOrdinarySignalSentTwiceBeforeItsDispatchIsOneCallback()
    {
        RequireLinuxSignalNumbers();
        using var loop = LoopTests.NewLoop(backend);
        int calls = 0, deliveries = 0;
        var u = loop.AddSignal((PosixSignal)SIGUSR2, (_, count) => { calls++; deliveries += count; });
        SendAndAwaitPending([u], SIGUSR2, SIGUSR2);
        Thread.Sleep(20); // the second delivery, if the kernel did not merge it, is counted by now
        loop.RunOnce(TimeSpan.Zero);
        RunIdle(loop);
        Assert.That(calls, Is.EqualTo(1));
        Assert.That(deliveries, Is.InRange(1, 2));
    }

    // ---- TEST(pidfd) ----

    /// <summary>TEST(pidfd): a child that exits 66 is reported (its callback exits the loop, CLD_EXITED with status 66)
    /// while a second child, watched too and owned by its source (set_child_process_own), lives on and is not reported;
    /// dropping that source kills the second child, and reaps it: kill(pid2, 0) then answers ESRCH. (sd-event adds the
    /// first child by a pidfd; IoMux adds by pid and opens the pidfd itself.)</summary>
    [Test]
    public void Pidfd_AChildsExitIsReportedWhileAnotherWatchedChildLivesOn()
    {
        using var loop = LoopTests.NewLoop(backend);
        int pid = LoopChildTests.Spawn("exit 66");
        int pid2 = LoopChildTests.Spawn("sleep 30");
        try
        {
            int secondCalls = 0;
            ChildStatus status = default;
            var s = loop.AddChild(pid, (_, exit) => { status = exit; loop.Exit(0); });
            var t = loop.AddChild(pid2, (_, _) => secondCalls++);
            t.OwnsProcess = true;
            Assert.That(RunGuarded(loop), Is.Zero);
            Assert.That((status.Code, status.Status), Is.EqualTo((ChildStatusCode.Exited, 66)));
            Assert.That(s.IsDisposed, Is.True, "a reported child's source disposes itself");
            Assert.That(secondCalls, Is.Zero);
            Assert.That(TestProcesses.Signal(pid2, 0), Is.Zero, "the second child is still alive");
            Assert.That(t.HasExited, Is.False);
            t.Dispose();
            Assert.That(TestProcesses.Signal(pid2, 0), Is.EqualTo(-1), "the owned child was killed and reaped when its source went");
        }
        finally
        {
            TestProcesses.Signal(pid2, SIGKILL);
            int status;
            var clock = Stopwatch.StartNew();
            while (waitpid(pid2, &status, 1 /* WNOHANG */) == 0 && clock.Elapsed < Deadline)
                Thread.Sleep(5);
        }
    }

    // ---- TEST(ratelimit) ----

    /// <summary>TEST(ratelimit), first part: an always-ready pipe under a limit of 5 per interval, iterated slowly
    /// (a quarter of the interval apart), is dispatched every time and never limited. sd-event's 1 s and 250 ms
    /// are scaled to 400 ms and 100 ms.</summary>
    [Test]
    public void Ratelimit_AnIoSourceDispatchedSlowlyIsNeverLimited()
    {
        using var loop = LoopTests.NewLoop(backend);
        var p = Pipe();
        int count = 0;
        var s = loop.AddIo(p.Read, Interest.Readable, (_, _) => count++, description: "test-ratelimit-io");
        s.SetRateLimit(TimeSpan.FromMilliseconds(400), burst: 5);
        WriteByte(p.Write);
        for (int i = 0; i < 10; i++)
        {
            loop.RunOnce(TimeSpan.FromSeconds(1));
            Thread.Sleep(100);
        }
        Assert.That(s.IsRateLimited, Is.False);
        Assert.That(count, Is.EqualTo(10));
    }

    /// <summary>TEST(ratelimit), second part: the limit removed and set again (1 s, 5), ten fast iterations: the
    /// source is limited (sd-event asserts fewer than 10 dispatches; IoMux allows exactly the burst).</summary>
    [Test]
    public void Ratelimit_AnIoSourceDispatchedFastIsLimitedAfterItsBurst()
    {
        using var loop = LoopTests.NewLoop(backend);
        var p = Pipe();
        int count = 0;
        var s = loop.AddIo(p.Read, Interest.Readable, (_, _) => count++);
        s.SetRateLimit(TimeSpan.FromSeconds(1), burst: 5);
        WriteByte(p.Write);
        s.SetRateLimit(TimeSpan.Zero, burst: 0);
        s.SetRateLimit(TimeSpan.FromSeconds(1), burst: 5);
        for (int i = 0; i < 10; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(10));
        Assert.That(count, Is.LessThan(10).And.EqualTo(5));
        Assert.That(s.IsRateLimited, Is.True);
    }

    /// <summary>TEST(ratelimit), third part: a timer whose callback enables it and moves it 1 µs past its deadline
    /// (so it is due again at once), limited to 10 per second, is limited after 10 dispatches; removing the limit
    /// frees it at once; set again, it is limited after 10 more. (The expire callback: SdEventRestatedTests.Porting.cs.)</summary>
    [Test]
    public void Ratelimit_ATimerReArmingItselfIsLimitedAfterItsBurstAndRemovingTheLimitFreesIt()
    {
        using var loop = LoopTests.NewLoop(backend);
        int count = 0;
        var s = loop.AddTimer(TimeSpan.FromTicks(10), t =>
        {
            t.State = SourceState.On;
            t.SetDeadline(t.Deadline + TimeSpan.FromMicroseconds(1));
            count++;
        }, accuracy: TimeSpan.FromTicks(10));
        s.SetRateLimit(TimeSpan.FromSeconds(1), burst: 10);
        Assert.That(RunUntil(loop, () => s.IsRateLimited), Is.True, $"never limited after {count} dispatches");
        Assert.That(count, Is.EqualTo(10));

        s.SetRateLimit(TimeSpan.Zero, burst: 0); // "to get rid of an active rate limit the client disables it explicitly"
        Assert.That(s.IsRateLimited, Is.False);
        s.SetRateLimit(TimeSpan.FromSeconds(1), burst: 10);
        Assert.That(RunUntil(loop, () => s.IsRateLimited), Is.True, $"never limited again after {count} dispatches");
        Assert.That(count, Is.EqualTo(20));
    }

    // ---- TEST(leave_ratelimit) ----

    /// <summary>TEST(leave_ratelimit): a pipe whose writer is closed reports end-of-file forever; limited to 5 per
    /// 5 minutes it is dispatched 5 times, then held back; leaving the limit by hand lets it run again. sd-event
    /// has sd_event_source_leave_ratelimit; IoMux leaves it by setting the limit anew (SetRateLimit), and reports
    /// IsRateLimited right after the fifth dispatch where sd-event reports it at the sixth attempt.</summary>
    [Test]
    public void LeaveRatelimit_AnEndlessHangupIsHeldBackAfterItsBurstAndLeavingTheLimitResumesIt()
    {
        using var loop = LoopTests.NewLoop(backend);
        var p = Pipe();
        int c = 0;
        var s = loop.AddIo(p.Read, Interest.Readable, (_, readiness) =>
        {
            Assert.That(readiness.HasFlag(Readiness.Readable), Is.True);
            c++;
        });
        s.SetRateLimit(TimeSpan.FromMinutes(5), burst: 5);
        LibC.close(p.Write); // continuous EOF
        _fds.Remove(p.Write);
        Assert.That(RunUntil(loop, () => c >= 5), Is.True);
        Assert.That(c, Is.EqualTo(5));
        Assert.That(s.IsRateLimited, Is.True);
        RunIdle(loop);
        Assert.That(c, Is.EqualTo(5), "held back while limited");

        s.SetRateLimit(TimeSpan.FromMinutes(5), burst: 5); // leaves the limit
        Assert.That(s.IsRateLimited, Is.False);
        Assert.That(RunUntil(loop, () => c >= 6), Is.True, "not dispatched after leaving the limit");
    }

    // ---- TEST(simple_timeout) ----

    /// <summary>TEST(simple_timeout): an iteration with nothing to do and a random timeout (up to 2 s there, up to
    /// 300 ms with a sub-millisecond part here) may sleep longer than asked, but never shorter.</summary>
    [Test]
    public void SimpleTimeout_AnIdleIterationNeverWakesBeforeItsTimeout()
    {
        using var loop = LoopTests.NewLoop(backend);
        var random = new Random(TestContext.CurrentContext.Random.Next());
        for (int round = 0; round < 3; round++)
        {
            var someTime = TimeSpan.FromTicks(random.NextInt64(0, TimeSpan.FromMilliseconds(300).Ticks));
            var clock = Stopwatch.StartNew();
            Assert.That(loop.RunOnce(someTime), Is.True);
            Assert.That(clock.Elapsed, Is.GreaterThanOrEqualTo(someTime), $"woke early for a timeout of {someTime.TotalMilliseconds} ms");
        }
    }

    // ---- TEST(defer_fair_scheduling) ----

    /// <summary>TEST(defer_fair_scheduling): five defer sources of equal priority, always on, each counting to 5 and
    /// then exiting the loop: every one gets its turn, all counters end at 5. (sd-event's test also sets
    /// exit-on-idle, as a safety; IoMux has none, a guard timer bounds the run instead.)</summary>
    [Test]
    public void DeferFairScheduling_DefersOfEqualPriorityTakeTurns()
    {
        using var loop = LoopTests.NewLoop(backend);
        var counters = new int[5];
        for (int i = 0; i < 5; i++)
        {
            int index = i;
            loop.AddDefer(_ =>
            {
                if (counters[index] >= 5)
                    loop.Exit(0);
                else
                    counters[index]++;
            }, state: SourceState.On);
        }
        Assert.That(RunGuarded(loop), Is.Zero);
        Assert.That(counters, Is.All.EqualTo(5));
    }
}
