using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>The rows of docs/LOOP.md's "Differences from sd-event" table that issue 22 decided for sd-event's
/// behaviour, each pinned: defer sources are oneshot by default (row 4), one signal source per signal per loop (row 5),
/// a failing source can be switched off while the loop goes on (row 1), a child's status tells exit from signal and
/// reports stops and resumptions (row 7), a child source can own its process (row 7), an I/O source can own its
/// descriptor and change it (row 18), and the accuracy default that was kept (row 2).</summary>
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed unsafe partial class LoopPortingDecisionsTests(BackendProvider backend)
{
    private const int SIGKILL = 9, SIGTERM = 15, SIGCONT = 18, SIGSTOP = 19;

    /// <summary>SIGUSR1 of the system running the tests (the tests that use it are not all Linux-only).</summary>
    private static readonly int SIGUSR1 = UserSignal1(OperatingSystem.IsLinux() ? "linux" : Platform.IsIllumos ? "illumos" : "bsd");

    /// <summary>SIGUSR1 per system, in SignalFacts' names, from the headers SignalFacts cites: 10 on Linux, 16 on illumos
    /// (signal_iso.h), 30 on macOS, FreeBSD and the other BSDs (where 10 is SIGBUS).</summary>
    private static int UserSignal1(string os) => os switch { "linux" => 10, "illumos" => 16, _ => 30 };
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [LibraryImport("libc")] private static partial int __libc_current_sigrtmin();

    private EventLoop NewLoop() => LoopTests.NewLoop(backend);

    private static bool RunUntil(EventLoop loop, Func<bool> done)
    {
        var clock = Stopwatch.StartNew();
        while (!done() && clock.Elapsed < Deadline)
            loop.RunOnce(TimeSpan.FromMilliseconds(200));
        return done();
    }

    // ---- row 4: defer sources ----

    /// <summary>sd_event_add_defer(3): "the event source is enabled in oneshot mode". A defer added without a state runs
    /// once and is then off; the loop sleeps afterwards rather than spinning.</summary>
    [Test]
    public void ADeferSourceIsOneshotByDefault()
    {
        using var loop = NewLoop();
        int runs = 0;
        var defer = loop.AddDefer(_ => runs++);
        Assert.That(defer.State, Is.EqualTo(SourceState.Oneshot));
        for (int i = 0; i < 3; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(10));
        Assert.That(runs, Is.EqualTo(1));
        Assert.That(defer.State, Is.EqualTo(SourceState.Off));
        defer.State = SourceState.On; // the recurring kind, as sd_event_source_set_enabled(SD_EVENT_ON)
        for (int i = 0; i < 3; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(10));
        Assert.That(runs, Is.EqualTo(4));
    }

    // ---- row 5: one source per signal per loop ----

    /// <summary>sd_event_add_signal(3): a second source for a signal in the same loop fails (-EBUSY there,
    /// InvalidOperationException here); once the first is gone, a new one may be added; another loop has its own; the
    /// loop's own helper sources (SignalExit) do not count.</summary>
    [Test]
    public void ASecondSourceForTheSameSignalInOneLoopIsRefused()
    {
        using var loop = NewLoop();
        using var other = NewLoop();
        var first = loop.AddSignal((PosixSignal)SIGUSR1, (_, _) => { });
        var e = Assert.Throws<InvalidOperationException>(() => loop.AddSignal((PosixSignal)SIGUSR1, (_, _) => { }))!;
        Assert.That(e.Message, Does.Contain("one per signal per loop"));
        using (other.AddSignal((PosixSignal)SIGUSR1, (_, _) => { }))
        {
            // another loop: its own source
        }
        first.Dispose();
        loop.AddSignal((PosixSignal)SIGUSR1, (_, _) => { }).Dispose();
        loop.SignalExit = true;
        loop.AddSignal(PosixSignal.SIGTERM, (_, _) => { }).Dispose(); // SignalExit's SIGTERM is the loop's helper
    }

    /// <summary>SIGRTMIN is .NET's (thread activation) and glibc keeps the two below it: a source for one of those would
    /// take the runtime's signal. sd-event's programs use SIGRTMIN+n, which stays allowed.</summary>
    [Test]
    public void TheSignalsTheRuntimeAndTheCLibraryKeepAreRefused()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("SIGRTMIN and the C library's reserved signals are Linux's");
        using var loop = NewLoop();
        int rtmin = __libc_current_sigrtmin();
        foreach (int reserved in new[] { 32, rtmin })
            Assert.Throws<ArgumentOutOfRangeException>(() => loop.AddSignal((PosixSignal)reserved, (_, _) => { }), $"signal {reserved}");
        loop.AddSignal((PosixSignal)(rtmin + 1), (_, _) => { }).Dispose();
    }

    /// <summary>A fault signal is the faulting thread's to handle at once (the runtime makes SIGSEGV a
    /// NullReferenceException); a loop source that cancelled its default action would send the thread back to the
    /// faulting instruction forever. SIGKILL and SIGSTOP cannot be caught: a clear refusal, not the runtime's
    /// IOException "Invalid argument". Numbers from this system's table (SignalFacts, pinned below).</summary>
    [Test]
    public void FaultSignalsAndTheUncatchableOnesAreRefused()
    {
        using var loop = NewLoop();
        var facts = SignalFacts.Here;
        foreach (int refused in new[] { 4, 5, 8, 11, facts.Sigbus, facts.Sigsys, 9, facts.Sigstop })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => loop.AddSignal((PosixSignal)refused, (_, _) => { }), $"signal {refused}")!;
            Assert.That(e.ActualValue, Is.EqualTo(refused));
        }
        loop.AddSignal((PosixSignal)SIGUSR1, (_, _) => { }).Dispose();
        loop.AddSignal(PosixSignal.SIGHUP, (_, _) => { }).Dispose();
    }

    /// <summary>The per-system numbers, each from the header cited in SignalFacts: a wrong one (Linux's SIGBUS 7 used on
    /// a BSD, where 7 is SIGEMT and 10 is SIGUSR1 on Linux) refuses a signal a program may use, or lets a fault through.</summary>
    [TestCase("linux", 7, 31, 19, new int[0])]
    [TestCase("macos", 10, 12, 17, new int[0])]
    [TestCase("freebsd", 10, 12, 17, new[] { 32, 33 })]
    [TestCase("illumos", 10, 12, 23, new[] { 32, 33, 36 })]
    [TestCase("bsd", 10, 12, 17, new int[0])]
    public void TheSignalNumbersPerSystemAreTheHeaders(string os, int sigbus, int sigsys, int sigstop, int[] threadLibrary)
    {
        var facts = SignalFacts.For(os);
        Assert.That((facts.Sigbus, facts.Sigsys, facts.Sigstop), Is.EqualTo((sigbus, sigsys, sigstop)));
        Assert.That(facts.ThreadLibrary, Is.EqualTo(threadLibrary));
        // Linux's SIGUSR1 is 10, the BSDs' SIGBUS: refused there, served on Linux.
        Assert.That(facts.WhyRefused((PosixSignal)10, 0) is null, Is.EqualTo(os == "linux"));
    }

    /// <summary>The ordinary signal these tests add sources for must be one every system's loop serves: SIGUSR1 taken as
    /// Linux's 10 everywhere is SIGBUS on macOS, FreeBSD, illumos and the other BSDs, so the tests above that are not
    /// Linux-only would meet a refusal there (macOS CI runs them) instead of testing what they say.</summary>
    [TestCase("linux")]
    [TestCase("macos")]
    [TestCase("freebsd")]
    [TestCase("illumos")]
    [TestCase("bsd")]
    public void TheOrdinarySignalTheseTestsUseIsServedOnEverySystem(string os) =>
        Assert.That(SignalFacts.For(os).WhyRefused((PosixSignal)UserSignal1(os), 0), Is.Null);

    // ---- row 1: failure handling ----

    /// <summary>sd-event's default (source_dispatch: "returned error, disabling"): with <see cref="EventSource.ExitOnFailure"/>
    /// false, a callback that throws switches its source off, keeps the exception in <see cref="EventSource.Failure"/>,
    /// and the loop goes on: the other sources of the iteration run, and later iterations too. An I/O source leaves the
    /// poller, a repeating timer stops.</summary>
    [Test]
    public void ASourceThatMayNotStopTheLoopIsSwitchedOffWhenItThrowsAndTheLoopGoesOn()
    {
        using var loop = NewLoop();
        LibC.CreateNonBlockingPipe(out int r, out int w);
        try
        {
            byte b = 1;
            Assert.That((long)LibC.write(w, &b, 1), Is.EqualTo(1L));
            var boom = new InvalidDataException("boom");
            int ioCalls = 0, timerCalls = 0, others = 0;
            var io = loop.AddIo(r, Interest.Readable, (_, _) => { ioCalls++; throw boom; }, priority: -2);
            io.ExitOnFailure = false;
            var timer = loop.AddTimer(TimeSpan.Zero, _ => { timerCalls++; throw new InvalidCastException(); },
                accuracy: TimeSpan.Zero, period: TimeSpan.FromMilliseconds(1), priority: -1);
            timer.ExitOnFailure = false;
            loop.AddDefer(_ => others++, state: SourceState.On, priority: 5);
            Thread.Sleep(2);
            for (int i = 0; i < 5; i++)
                loop.RunOnce(TimeSpan.FromMilliseconds(20));
            Assert.That((ioCalls, timerCalls), Is.EqualTo((1, 1)), "each failing source ran once");
            Assert.That(others, Is.EqualTo(5), "the loop went on, the rest of the first iteration included");
            Assert.That((io.State, timer.State), Is.EqualTo((SourceState.Off, SourceState.Off)));
            Assert.That(io.Failure, Is.SameAs(boom));
            Assert.That(timer.Failure, Is.TypeOf<InvalidCastException>());
            Assert.That(io.Registration, Is.Null, "the switched-off I/O source left the poller");
            Assert.That(loop.Poller.RegistrationCount, Is.Zero);
        }
        finally
        {
            LibC.close(r);
            LibC.close(w);
        }
    }

    /// <summary>The default stays: a source that throws stops the loop (sd_event_source_set_exit_on_failure, which IoMux
    /// makes the default); its <see cref="EventSource.Failure"/> stays null, the exception is the loop's. A prepare
    /// callback with <see cref="EventSource.ExitOnFailure"/> false switches its source off too (sd-event's event_prepare).</summary>
    [Test]
    public void ByDefaultAFailureStopsTheLoopAndAPrepareCallbackMayBeSwitchedOffInstead()
    {
        using var loop = NewLoop();
        var failing = loop.AddDefer(_ => throw new InvalidDataException("boom"), description: "failing");
        Assert.That(failing.ExitOnFailure, Is.True);
        var e = Assert.Throws<EventLoopException>(() => loop.RunOnce(TimeSpan.Zero))!;
        Assert.That(e.FailedSource, Is.SameAs(failing));
        Assert.That(failing.Failure, Is.Null);

        using var second = NewLoop();
        int runs = 0;
        var prepared = second.AddDefer(_ => runs++, state: SourceState.On);
        prepared.PrepareCallback = _ => throw new InvalidDataException("prepare");
        prepared.ExitOnFailure = false;
        second.RunOnce(TimeSpan.Zero);
        Assert.That(second.RunOnce(TimeSpan.Zero), Is.True, "the loop goes on");
        Assert.That((runs, prepared.State), Is.EqualTo((0, SourceState.Off)));
        Assert.That(prepared.Failure, Is.TypeOf<InvalidDataException>());
    }

    // ---- row 7: children ----

    /// <summary>sd_event_add_child with WEXITED|WSTOPPED|WCONTINUED: a stop and a resumption are reported (CLD_STOPPED
    /// with the signal, CLD_CONTINUED) and the source goes on watching; the death by SIGKILL ends it (CLD_KILLED, 9).</summary>
    [Test]
    public void AChildWatchedForStopsAndResumptionsReportsEachThenItsDeath()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("the signal numbers (SIGSTOP 19, SIGCONT 18) are Linux's");
        using var loop = NewLoop();
        int pid = LoopChildTests.Spawn("sleep 30");
        try
        {
            var seen = new List<(ChildStatusCode, int)>();
            var child = loop.AddChild(pid, (_, s) => seen.Add((s.Code, s.Status)),
                ChildEvents.Exited | ChildEvents.Stopped | ChildEvents.Continued);
            loop.RunOnce(TimeSpan.FromMilliseconds(10));
            Assert.That(TestProcesses.Signal(pid, SIGSTOP), Is.Zero);
            Assert.That(RunUntil(loop, () => seen.Count >= 1), Is.True, "the stop was not reported");
            Assert.That(TestProcesses.Signal(pid, SIGCONT), Is.Zero);
            Assert.That(RunUntil(loop, () => seen.Count >= 2), Is.True, "the resumption was not reported");
            Assert.That(child.IsDisposed, Is.False, "a stop or a resumption does not end the source");
            Assert.That(TestProcesses.Signal(pid, SIGKILL), Is.Zero);
            Assert.That(RunUntil(loop, () => child.IsDisposed), Is.True, "the death was not reported");
            Assert.That(seen, Is.EqualTo(new[] { (ChildStatusCode.Stopped, SIGSTOP), (ChildStatusCode.Continued, SIGCONT), (ChildStatusCode.Killed, SIGKILL) }));
            Assert.That(child.HasExited, Is.True);
        }
        finally
        {
            LoopChildTests.KillAndReap(pid);
        }
    }

    /// <summary>sd_event_source_send_child_signal: SIGTERM through the source (its pidfd on Linux) ends the child, whose
    /// status says so; a reaped child can no longer be signalled (its pid may be someone else's).</summary>
    [Test]
    public void SendSignalReachesTheChildAndAReapedChildIsRefused()
    {
        using var loop = NewLoop();
        int pid = LoopChildTests.Spawn("sleep 30");
        try
        {
            ChildStatus status = default;
            var child = loop.AddChild(pid, (_, s) => status = s);
            child.SendSignal(SIGTERM);
            Assert.That(RunUntil(loop, () => child.HasExited), Is.True);
            Assert.That((status.Code, status.Status, status.ShellExitCode), Is.EqualTo((ChildStatusCode.Killed, SIGTERM, 128 + SIGTERM)));
            Assert.Throws<InvalidOperationException>(() => child.SendSignal(SIGTERM));
            Assert.Throws<ArgumentException>(() => loop.AddChild(pid, (_, _) => { }, ChildEvents.Stopped));
        }
        finally
        {
            LoopChildTests.KillAndReap(pid);
        }
    }

    /// <summary>sd_event_source_set_child_process_own: a loop disposed with an owned child still running kills and reaps
    /// it; one not owned is left alone, as before.</summary>
    [Test]
    public void DisposingTheLoopKillsAndReapsAnOwnedChildOnly()
    {
        int owned = LoopChildTests.Spawn("sleep 30"), left = LoopChildTests.Spawn("sleep 30");
        try
        {
            using (var loop = NewLoop())
            {
                loop.AddChild(owned, (_, _) => { }).OwnsProcess = true;
                loop.AddChild(left, (_, _) => { }, ChildEvents.Exited | ChildEvents.Stopped); // the SIGCHLD path too
                loop.RunOnce(TimeSpan.FromMilliseconds(10));
            }
            Assert.That(TestProcesses.Signal(owned, 0), Is.EqualTo(-1), "the owned child is gone, reaped");
            Assert.That(TestProcesses.Signal(left, 0), Is.Zero, "the other one lives");
        }
        finally
        {
            LoopChildTests.KillAndReap(owned);
            LoopChildTests.KillAndReap(left);
        }
    }

    // ---- row 18: descriptor ownership ----

    /// <summary>Whether a pipe's read end is closed: a write to its write end fails with EPIPE once no reader is left
    /// (the runtime ignores SIGPIPE). Unlike a look at the descriptor number, another test reusing that number cannot
    /// fool it.</summary>
    internal static bool ReaderGone(int writeEnd)
    {
        byte b = 0;
        return LibC.write(writeEnd, &b, 1) < 0 && Errno.Last == Errno.EPIPE;
    }

    /// <summary>Without ownership the caller's descriptor outlives the source, as before: changing it or disposing the
    /// source closes nothing.</summary>
    [Test]
    public void ASourceThatDoesNotOwnItsDescriptorClosesNothing()
    {
        using var loop = NewLoop();
        LibC.CreateNonBlockingPipe(out int ar, out int aw);
        LibC.CreateNonBlockingPipe(out int br, out int bw);
        try
        {
            var source = loop.AddIo(ar, Interest.Readable, (_, _) => { });
            Assert.That(source.OwnsDescriptor, Is.False);
            source.SetDescriptor(br);
            source.Dispose();
            Assert.That((ReaderGone(aw), ReaderGone(bw)), Is.EqualTo((false, false)));
        }
        finally
        {
            foreach (int fd in new[] { ar, aw, br, bw })
                LibC.close(fd);
        }
    }

    // ---- row 2: timer accuracy ----

    /// <summary>The accuracy default IoMux keeps (docs/LOOP.md row 2): 1 ms when none is given, and zero is exact, not
    /// sd-event's "the default" (250 ms).</summary>
    [Test]
    public void TheDefaultAccuracyIsOneMillisecondAndZeroIsExact()
    {
        using var loop = NewLoop();
        Assert.That(TimerSource.DefaultAccuracy, Is.EqualTo(TimeSpan.FromMilliseconds(1)));
        Assert.That(loop.AddTimer(TimeSpan.FromHours(1), _ => { }).Accuracy, Is.EqualTo(TimeSpan.FromMilliseconds(1)));
        Assert.That(loop.AddTimer(TimeSpan.FromHours(1), _ => { }, accuracy: TimeSpan.Zero).Accuracy, Is.EqualTo(TimeSpan.Zero));
    }
}
