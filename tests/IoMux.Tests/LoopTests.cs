using System.Runtime.InteropServices;
using IoMux.Conformance;
using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>The event loop, on every backend (and over the kqueue and ports models), like the conformance suite.</summary>
[TestFixtureSource(nameof(Backends))]
public sealed unsafe class LoopTests(BackendProvider backend)
{
    public static IEnumerable<TestFixtureData> Backends =>
        Models.ModelTargets.WithNative.Where(t => t.Name is "epoll" or "poll" or "select" or "kqueue-model-freebsd-14" or "ports-model")
            .Select(t => new TestFixtureData(t).SetArgDisplayNames(t.Name));

    private EventLoop _loop = null!;
    private readonly List<int> _fds = [];

    /// <summary>A loop on <paramref name="backend"/>, or the test is skipped with the reason it cannot run here.</summary>
    internal static EventLoop NewLoop(BackendProvider backend)
    {
        if (backend.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        return new EventLoop(new Poller(backend.Create()));
    }

    [SetUp]
    public void CreateLoop() => _loop = NewLoop(backend);

    [TearDown]
    public void DisposeLoop()
    {
        _loop?.Dispose();
        foreach (var fd in _fds)
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

    private void RunUntil(Func<bool> done, int maxIterations = 10_000)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < maxIterations && !done() && clock.Elapsed < TimeSpan.FromSeconds(10); i++)
            _loop.RunOnce(TimeSpan.FromMilliseconds(50));
        Assert.That(done(), Is.True, "the loop did not get there");
    }

    [Test]
    public void PendingSourcesRunInStrictPriorityOrderAndPostSourcesLast()
    {
        var order = new List<string>();
        var (r, w) = Pipe();
        byte b = 1;
        LibC.write(w, &b, 1);
        _loop.AddIo(r, Interest.Readable, (_, _) => order.Add("io:5"), priority: 5, state: SourceState.Oneshot);
        _loop.AddDefer(_ => order.Add("defer:-10"), priority: -10, state: SourceState.Oneshot);
        _loop.AddDefer(_ => order.Add("defer:20"), priority: 20, state: SourceState.Oneshot);
        _loop.AddPost(_ => order.Add("post:-100"), priority: -100, state: SourceState.Oneshot);
        _loop.Post(() => order.Add("posted:0"));
        _loop.AddTimer(TimeSpan.Zero, _ => order.Add("timer:1"), accuracy: TimeSpan.Zero, priority: 1);
        Thread.Sleep(2);
        _loop.RunOnce(TimeSpan.FromSeconds(1));
        Assert.That(order, Is.EqualTo(new[] { "defer:-10", "posted:0", "timer:1", "io:5", "defer:20", "post:-100" }));
    }

    [Test]
    public void ABusyHighPrioritySourceRunsFirstEveryIterationButDoesNotStarveLowerOnesOfTheirTurn()
    {
        // Documented behaviour: priorities order the pending sources of one iteration; a source that is
        // always pending (a defer that stays on) runs first in every iteration, and every other pending
        // source still runs later in the same iteration.
        int busy = 0, low = 0;
        _loop.AddDefer(_ => busy++, priority: -1, state: SourceState.On);
        var (r, w) = Pipe();
        byte b = 1;
        LibC.write(w, &b, 1);
        _loop.AddIo(r, Interest.Readable, (_, _) => low++, priority: 10);
        for (int i = 0; i < 5; i++)
            _loop.RunOnce(TimeSpan.FromSeconds(1));
        Assert.That((busy, low), Is.EqualTo((5, 5)));
    }

    [Test]
    public void TimersFireInDeadlineOrderAndRepeat()
    {
        var fired = new List<int>();
        _loop.AddTimer(TimeSpan.FromMilliseconds(30), _ => fired.Add(30), accuracy: TimeSpan.Zero);
        _loop.AddTimer(TimeSpan.FromMilliseconds(10), _ => fired.Add(10), accuracy: TimeSpan.Zero);
        _loop.AddTimer(TimeSpan.FromMilliseconds(20), _ => fired.Add(20), accuracy: TimeSpan.Zero);
        int ticks = 0;
        var repeating = _loop.AddTimer(TimeSpan.FromMilliseconds(5), _ => ticks++, accuracy: TimeSpan.Zero, period: TimeSpan.FromMilliseconds(5));
        RunUntil(() => fired.Count == 3 && ticks >= 4);
        Assert.That(fired, Is.EqualTo(new[] { 10, 20, 30 }));
        repeating.Dispose();
    }

    [Test]
    public void TimersDueWithinOneAccuracyWindowCostOneKernelWait([Values] bool slim)
    {
        // 10 000 timers spread over 20 ms with 1 s accuracy: every window contains the earliest timer's
        // latest moment, so one wakeup serves all of them. Slim timers and TimerSources share the table.
        // The accuracy must exceed the time the adding takes (each delay counts from its own add): with 100 ms,
        // a loaded machine took longer than that to add them, and the loop rightly woke before the last ones were due.
        int fired = 0;
        var accuracy = TimeSpan.FromSeconds(1);
        for (int i = 0; i < 10_000; i++)
        {
            var delay = TimeSpan.FromMilliseconds(20.0 * i / 10_000);
            if (slim)
                _loop.AddSlimTimer(delay, _ => fired++, accuracy: accuracy);
            else
                _loop.AddTimer(delay, _ => fired++, accuracy: accuracy);
        }
        long waits = _loop.Poller.Counters.KernelWaits;
        _loop.RunOnce(TimeSpan.FromSeconds(5));
        Assert.That(fired, Is.EqualTo(10_000));
        Assert.That(_loop.Poller.Counters.KernelWaits - waits, Is.LessThanOrEqualTo(2), "one wait (a spurious early return is tolerated once)");
    }

    [Test]
    public void TimersOnEveryClockFire()
    {
        var fired = new List<LoopClock>();
        foreach (var clock in new[] { LoopClock.Monotonic, LoopClock.Realtime, LoopClock.Boottime })
        {
            if (clock == LoopClock.Boottime && !OperatingSystem.IsLinux())
                continue;
            Assert.That(_loop.Now(clock), Is.GreaterThan(TimeSpan.Zero), $"{clock} now");
            _loop.AddTimer(TimeSpan.FromMilliseconds(5), _ => fired.Add(clock), accuracy: TimeSpan.Zero, clock: clock);
        }
        RunUntil(() => fired.Count == (OperatingSystem.IsLinux() ? 3 : 2));
        Assert.That(fired, Does.Contain(LoopClock.Realtime).And.Contain(LoopClock.Monotonic));
    }

    [Test]
    public void CallbacksCancelAndRearmTimersAndDisposePendingSources()
    {
        int victimRuns = 0, rearmed = 0, deferRuns = 0;
        var victim = _loop.AddTimer(TimeSpan.Zero, _ => victimRuns++, accuracy: TimeSpan.Zero, priority: 5);
        DeferSource? doomed = null;
        _loop.AddTimer(TimeSpan.Zero, t =>
        {
            victim.Dispose();         // pending in this very iteration: must not run
            doomed!.Dispose();        // likewise
            if (++rearmed < 3)
                t.SetDelay(TimeSpan.FromMilliseconds(1)); // re-arm itself from its own callback
        }, accuracy: TimeSpan.Zero, priority: 0);
        doomed = _loop.AddDefer(_ => deferRuns++, priority: 10);
        Thread.Sleep(2);
        RunUntil(() => rearmed == 3);
        Assert.That((victimRuns, deferRuns), Is.EqualTo((0, 0)));
    }

    [Test]
    public void AnIoSourceCanDisposeItselfFromItsCallback()
    {
        var (r, w) = Pipe();
        byte b = 1;
        LibC.write(w, &b, 1);
        int runs = 0;
        _loop.AddIo(r, Interest.Readable, (self, readiness) =>
        {
            runs++;
            Assert.That(readiness.HasFlag(Readiness.Readable));
            self.Dispose();
        });
        for (int i = 0; i < 3; i++)
            _loop.RunOnce(TimeSpan.FromMilliseconds(20));
        Assert.That(runs, Is.EqualTo(1));
        Assert.That(_loop.Poller.RegistrationCount, Is.Zero, "its registration is gone");
    }

    [Test]
    public void PostsFromTwoThreadsAllRunOnceOnTheLoopThread()
    {
        const int PerThread = 20_000;
        int ran = 0, wrongThread = 0;
        int loopThread = Environment.CurrentManagedThreadId;
        var posters = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            for (int i = 0; i < PerThread; i++)
                _loop.Post(() => { ran++; if (Environment.CurrentManagedThreadId != loopThread) wrongThread++; });
        })).ToArray();
        RunUntil(() => ran == 2 * PerThread && posters.All(p => p.IsCompleted), maxIterations: 1_000_000);
        Assert.That((ran, wrongThread), Is.EqualTo((2 * PerThread, 0)));
    }

    private sealed class Counter { public int Value; public string Order = ""; }

    [Test]
    public void PostWithStateRunsTheActionWithItsStateInPriorityOrder()
    {
        var counter = new Counter();
        _loop.Post(static s => ((Counter)s!).Order += "b", counter, priority: 1);
        _loop.Post(static s => ((Counter)s!).Order += "a", counter, priority: -1);
        _loop.Post(() => counter.Order += "0");
        _loop.RunOnce(TimeSpan.Zero);
        Assert.That(counter.Order, Is.EqualTo("a0b"));
    }

    [Test]
    public void APostWithStateAndASynchronizationContextPostAllocateNothingOnceTheQueueHasGrown()
    {
        // What a post with a capturing lambda cannot do: its closure and delegate are two objects (88 bytes) per post.
        const int Count = 10_000;
        var counter = new Counter();
        Action<object?> increment = static s => ((Counter)s!).Value++;
        SendOrPostCallback incrementBySync = static s => ((Counter)s!).Value++;
        var context = new LoopSynchronizationContext(_loop);
        // The first rounds grow the pending array and the queue (a ConcurrentQueue grows by adding a segment twice the
        // size of the last; a segment holding a whole round is then reused as a ring). The rounds after them must not
        // allocate per post: under 1 byte per post in every one (a closure or a box would be 24+ bytes each), and
        // nothing at all in most. Not "nothing in every round": now and then something of the runtime's own allocates
        // a few hundred bytes on this thread in the middle of a round (552 B once in three runs at load 10, on main as
        // well as on a branch), which says nothing about the posts.
        const int GrowingRounds = 4, Rounds = 10;
        var postingBytes = new List<long>();
        for (int round = 0; round < Rounds; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < Count; i++)
            {
                _loop.Post(increment, counter);
                context.Post(incrementBySync, counter);
            }
            long posting = GC.GetAllocatedBytesForCurrentThread() - before;
            _loop.RunOnce(TimeSpan.Zero);
            long withIteration = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.That(counter.Value, Is.EqualTo((round + 1) * 2 * Count), "every post ran in the one iteration");
            if (round < GrowingRounds)
                continue;
            postingBytes.Add(posting);
            Assert.That(posting, Is.LessThan(2 * Count), $"{posting} bytes for {2 * Count} posts: something per post");
            // The iteration itself may allocate a little on a model backend (its simulated kernel), never per post.
            Assert.That(withIteration, Is.LessThan(2 * Count), $"{withIteration} bytes for {2 * Count} posts and their iteration");
        }
        Assert.That(postingBytes.Count(b => b == 0), Is.GreaterThan(postingBytes.Count / 2),
            $"posting allocated in most rounds once the queue had grown: {string.Join(", ", postingBytes)} bytes");
    }

    [Test]
    public void ExitFromAnotherThreadEndsRunWithTheCodeAfterTheExitSources()
    {
        var exits = new List<int>();
        _loop.AddExit(_ => exits.Add(2), priority: 2);
        _loop.AddExit(_ => exits.Add(1), priority: 1);
        var stopper = Task.Run(() => { Thread.Sleep(30); _loop.Exit(7); });
        Assert.That(_loop.Run(), Is.EqualTo(7));
        Assert.That(exits, Is.EqualTo(new[] { 1, 2 }));
        Assert.That(stopper.Wait(TimeSpan.FromSeconds(10)), Is.True, "the stopping thread did not finish");
    }

    [Test]
    public void AThrowingCallbackStopsTheLoopRunsExitSourcesAndSurfacesTheException()
    {
        bool exitRan = false;
        _loop.AddExit(_ => exitRan = true);
        _loop.AddDefer(_ => throw new InvalidTimeZoneException("boom"), description: "the faulty one");
        var e = Assert.Throws<EventLoopException>(() => _loop.Run())!;
        Assert.That(e.InnerException, Is.InstanceOf<InvalidTimeZoneException>());
        Assert.That(e.Message, Does.Contain("the faulty one"));
        Assert.That(exitRan, Is.True);
        Assert.That(_loop.RunOnce(TimeSpan.Zero), Is.False, "the loop has exited");
    }
}

/// <summary>Signals and async/await on the loop (epoll; the mechanics above the poller are backend-neutral).</summary>
[NonParallelizable]
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed class LoopSignalAndAsyncTests(BackendProvider backend)
{
    private EventLoop NewLoop() => LoopTests.NewLoop(backend);

    [System.Runtime.InteropServices.DllImport("libc")] private static extern int kill(int pid, int signal);

    private static unsafe void WriteByte(int fd) { byte b = 1; LibC.write(fd, &b, 1); }
    private static unsafe void ReadByte(int fd) { byte b; LibC.read(fd, &b, 1); }

    [Test]
    public void ARealSigusr1IsDeliveredOnceOnTheLoopThread()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("SIGUSR1 is 10 on Linux");
        using var loop = NewLoop();
        int deliveries = 0, calls = 0, thread = -1;
        loop.AddSignal((System.Runtime.InteropServices.PosixSignal)10, (_, count) =>
        {
            calls++;
            deliveries += count;
            thread = Environment.CurrentManagedThreadId;
        });
        Assert.That(kill(Environment.ProcessId, 10), Is.Zero);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (calls == 0 && clock.Elapsed < TimeSpan.FromSeconds(5))
            loop.RunOnce(TimeSpan.FromSeconds(1));
        for (int i = 0; i < 3; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(20)); // nothing more may arrive
        Assert.That((calls, deliveries), Is.EqualTo((1, 1)));
        Assert.That(thread, Is.EqualTo(Environment.CurrentManagedThreadId));
    }

    [Test]
    public void AwaitInsideACallbackResumesOnTheLoopThreadAndAwaitedReadinessArrivesInOrder()
    {
        using var loop = NewLoop();
        LibC.CreateNonBlockingPipe(out int r, out int w);
        try
        {
            var source = loop.AddIo(r, Interest.Readable);
            int loopThread = Environment.CurrentManagedThreadId;
            int received = 0, written = 0, foreign = 0;
            const int Rounds = 2_000;
            async Task Reader()
            {
                await Task.Yield(); // resumes through the loop's SynchronizationContext
                if (Environment.CurrentManagedThreadId != loopThread) foreign++;
                for (int i = 0; i < Rounds; i++)
                {
                    var readiness = await source.NextAsync();
                    if (Environment.CurrentManagedThreadId != loopThread || !readiness.HasFlag(Readiness.Readable)) foreign++;
                    ReadByte(r);
                    received++;
                }
            }
            Task? reader = null;
            loop.Post(() => reader = Reader());
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (received < Rounds && clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                if (reader is not null && written == received)
                {
                    WriteByte(w); // one byte per await: the reader consumes it before the next is written
                    written++;
                }
                loop.RunOnce(TimeSpan.FromMilliseconds(100));
            }
            Assert.That(received, Is.EqualTo(Rounds));
            Assert.That(foreign, Is.Zero, "every continuation ran on the loop thread");
            Assert.That(reader!.IsCompletedSuccessfully, Is.True);
            // Allocation per await is measured in Release by BenchmarkDotNet (bench: LoopAwait), not here:
            // a Debug build's async state machines allocate on their own.
        }
        finally
        {
            LibC.close(r);
            LibC.close(w);
        }
    }
}

/// <summary>Rate limits against starvation (sd-event's ratelimit).</summary>
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed unsafe class LoopRateLimitTests(BackendProvider backend)
{
    private EventLoop NewLoop() => LoopTests.NewLoop(backend);

    [Test]
    public void ABusyDeferSourceIsHeldBackAfterItsBurstAndTheLoopSleepsMeanwhile()
    {
        using var loop = NewLoop();
        int runs = 0;
        var busy = loop.AddDefer(_ => runs++, state: SourceState.On);
        busy.SetRateLimit(TimeSpan.FromMilliseconds(200), burst: 5);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 5; i++)
            loop.RunOnce(TimeSpan.FromSeconds(2));
        Assert.That(runs, Is.EqualTo(5));
        Assert.That(busy.IsRateLimited, Is.True);
        loop.RunOnce(TimeSpan.FromSeconds(2)); // sleeps until the window ends, then runs it again
        Assert.That(runs, Is.EqualTo(6));
        Assert.That(clock.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(190)), "held back until its interval ended");
    }

    [Test]
    public void ARateLimitedIoSourceIsPausedInThePollerAndResumes()
    {
        using var loop = NewLoop();
        LibC.CreateNonBlockingPipe(out int r, out int w);
        try
        {
            byte b = 1;
            LibC.write(w, &b, 1); // level-ready forever: would be dispatched every iteration
            int runs = 0;
            var io = loop.AddIo(r, Interest.Readable, (_, _) => runs++);
            io.SetRateLimit(TimeSpan.FromMilliseconds(150), burst: 3);
            for (int i = 0; i < 3; i++)
                loop.RunOnce(TimeSpan.FromSeconds(1));
            Assert.That((runs, loop.Poller.RegistrationCount), Is.EqualTo((3, 0)), "paused: deregistered");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (runs == 3 && clock.Elapsed < TimeSpan.FromSeconds(5))
                loop.RunOnce(TimeSpan.FromSeconds(1));
            Assert.That(runs, Is.EqualTo(4), "resumed after the interval");
            Assert.That(loop.Poller.RegistrationCount, Is.EqualTo(1));
        }
        finally
        {
            LibC.close(r);
            LibC.close(w);
        }
    }
}

/// <summary>Child-process exit sources (pidfd on Linux; SIGCHLD + waitpid elsewhere).</summary>
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed unsafe partial class LoopChildTests(BackendProvider backend)
{
    private EventLoop NewLoop() => LoopTests.NewLoop(backend);

    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial int posix_spawnp(int* pid, byte* file, void* fileActions, void* attributes, byte** argv, byte** envp);

    [System.Runtime.InteropServices.DllImport("libc")] private static extern int kill(int pid, int signal);

    /// <summary>Spawns `sh -c script` with posix_spawnp: a child the runtime does not know, so nobody else reaps it.</summary>
    internal static int Spawn(string script)
    {
        var args = new[] { "sh", "-c", script };
        var pointers = args.Select(a => System.Runtime.InteropServices.Marshal.StringToCoTaskMemUTF8(a)).ToArray();
        try
        {
            byte** argv = stackalloc byte*[args.Length + 1];
            for (int i = 0; i < args.Length; i++)
                argv[i] = (byte*)pointers[i];
            argv[args.Length] = null;
            byte** envp = stackalloc byte*[1];
            envp[0] = null;
            int pid;
            int rc = posix_spawnp(&pid, argv[0], null, null, argv, envp);
            Assert.That(rc, Is.Zero, $"posix_spawnp: {Errno.Name(rc)}");
            return pid;
        }
        finally
        {
            foreach (var p in pointers)
                System.Runtime.InteropServices.Marshal.FreeCoTaskMem(p);
        }
    }

    /// <summary>The status tells an exit from a death by signal, as sd-event's siginfo does: <c>exit 137</c> and SIGKILL
    /// were the same int (137) before issue 22.</summary>
    [TestCase("exit 7", -1, ChildStatusCode.Exited, 7, 7)]
    [TestCase("exit 137", -1, ChildStatusCode.Exited, 137, 137)]
    [TestCase("sleep 30", 9, ChildStatusCode.Killed, 9, 128 + 9)]
    public void AChildsExitIsReportedOnceOnTheLoopThreadWithItsStatus(string script, int killWith, ChildStatusCode expectedCode,
        int expectedStatus, int expected)
    {
        using var loop = NewLoop();
        int pid = Spawn(script);
        int calls = 0, code = -1, thread = -1;
        ChildStatus status = default;
        var child = loop.AddChild(pid, (_, s) => { calls++; status = s; code = s.ShellExitCode; thread = Environment.CurrentManagedThreadId; });
        if (killWith > 0)
            Assert.That(kill(pid, killWith), Is.Zero);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (calls == 0 && clock.Elapsed < TimeSpan.FromSeconds(10))
            loop.RunOnce(TimeSpan.FromSeconds(1));
        loop.RunOnce(TimeSpan.FromMilliseconds(20));
        Assert.That((calls, code), Is.EqualTo((1, expected)));
        Assert.That((status.Code, status.Status), Is.EqualTo((expectedCode, expectedStatus)));
        Assert.That(child.Status, Is.EqualTo(status));
        Assert.That(thread, Is.EqualTo(Environment.CurrentManagedThreadId));
        Assert.That(child.IsDisposed && child.HasExited, Is.True, "the source disposes itself once the child is reaped");
        Assert.That(loop.Poller.RegistrationCount, Is.Zero);
    }

    [DllImport("libc")] private static extern int waitpid(int pid, int* status, int options);

    /// <summary>Cleanup for a test's child: SIGKILL, then reaped within a deadline (nothing to do if it is gone).</summary>
    internal static void KillAndReap(int pid)
    {
        if (kill(pid, 9) != 0)
            return; // reaped already (by its source, or someone else)
        int status;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (waitpid(pid, &status, 1 /* WNOHANG */) == 0 && clock.Elapsed < TimeSpan.FromSeconds(10))
            Thread.Sleep(5);
    }

    /// <summary>Issue 22's first finding: a child reaped by someone else (the runtime as pid 1, or any waitpid(-1))
    /// left the pidfd readable and the wait answering ECHILD, and the source re-armed it forever: the loop spun at
    /// 100% CPU. Now the source reports it (exit -1, <see cref="ChildSource.WasReapedElsewhere"/>) and the loop sleeps.</summary>
    [Test]
    public void AChildReapedBehindTheLoopsBackIsReportedAndTheLoopStaysIdle()
    {
        using var loop = NewLoop();
        int pid = Spawn("exit 3");
        int calls = 0, code = 0;
        var child = loop.AddChild(pid, (_, status) => { calls++; code = status.ShellExitCode; });
        int status;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (waitpid(pid, &status, 1 /* WNOHANG */) != pid) // someone else reaps it first
        {
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(10)), "the child did not exit");
            Thread.Sleep(5);
        }
        long iterationsBefore = loop.Iterations;
        clock.Restart();
        while (clock.Elapsed < TimeSpan.FromMilliseconds(500))
            loop.RunOnce(TimeSpan.FromMilliseconds(50));
        Assert.That((calls, code, child.WasReapedElsewhere, child.HasExited), Is.EqualTo((1, -1, true, true)));
        Assert.That(child.Status.Code, Is.EqualTo(ChildStatusCode.ReapedElsewhere));
        // 500 ms of 50 ms waits is about 10 iterations when the loop sleeps; a re-armed readable pidfd made it
        // tens of thousands.
        Assert.That(loop.Iterations - iterationsBefore, Is.LessThan(40), "the loop did not sleep");
        Assert.That(child.IsDisposed, Is.True);
    }

    [Test]
    public void AnUnknownProcessIsATypedError()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("pidfd_open reports ESRCH on Linux");
        using var loop = NewLoop();
        var e = Assert.Throws<PosixException>(() => loop.AddChild(int.MaxValue - 7, (_, _) => { }))!;
        Assert.That(e.ErrorName, Is.EqualTo("ESRCH"));
    }
}
