using System.Runtime.CompilerServices;
using IoMux.Conformance;
using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>Slim timers (records in the loop's timer table behind a <see cref="SlimTimer"/> handle), on every
/// backend the loop tests use.</summary>
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed class LoopSlimTimerTests(BackendProvider backend)
{
    private EventLoop _loop = null!;

    [SetUp]
    public void CreateLoop() => _loop = LoopTests.NewLoop(backend);

    [TearDown]
    public void DisposeLoop() => _loop?.Dispose();

    private void RunUntil(Func<bool> done)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!done() && clock.Elapsed < TimeSpan.FromSeconds(10))
            _loop.RunOnce(TimeSpan.FromMilliseconds(50));
        Assert.That(done(), Is.True, "the loop did not get there");
    }

    /// <summary>A delay, accuracy or period as long as TimeSpan allows means "never": it used to wrap round to a
    /// deadline in the past (delay.Ticks * 100 overflows past 292 years) and fire at once.</summary>
    [Test]
    public void ATimerALifetimeAwayNeverFires()
    {
        int fired = 0;
        foreach (var clock in new[] { LoopClock.Monotonic, LoopClock.Realtime })
        {
            _loop.AddTimer(TimeSpan.MaxValue, _ => fired++, accuracy: TimeSpan.MaxValue, clock: clock);
            _loop.AddTimer(TimeSpan.FromDays(365 * 300), _ => fired++, period: TimeSpan.MaxValue, clock: clock);
            _loop.AddSlimTimer(TimeSpan.MaxValue, _ => fired++, accuracy: TimeSpan.MaxValue, clock: clock);
            _loop.AddSlimTimer(TimeSpan.FromDays(365 * 300), _ => fired++, period: TimeSpan.MaxValue, clock: clock);
            _loop.AddTimerAt(TimeSpan.MaxValue, _ => fired++, clock: clock);
            var moved = _loop.AddSlimTimer(TimeSpan.Zero, _ => fired++, clock: clock);
            moved.SetDelay(TimeSpan.MaxValue);
            var source = _loop.AddTimer(TimeSpan.Zero, _ => fired++, clock: clock);
            source.SetDelay(TimeSpan.MaxValue);
        }
        var clockWatch = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 5; i++)
            _loop.RunOnce(TimeSpan.FromMilliseconds(10));
        Assert.That(fired, Is.Zero);
        Assert.That(clockWatch.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(45)), "the loop woke at once for a timer that is never due");
    }

    [Test]
    public void SlimTimersFireInDeadlineOrderOnEveryClockAndAOneshotEndsAfterItsCallback()
    {
        var fired = new List<int>();
        var iteration = new Dictionary<int, long>();
        void Fire(int which)
        {
            fired.Add(which);
            iteration[which] = _loop.Iterations;
        }
        bool activeInsideCallback = true;
        _loop.AddSlimTimer(TimeSpan.FromMilliseconds(30), _ => Fire(30), accuracy: TimeSpan.Zero);
        var ten = _loop.AddSlimTimer(TimeSpan.FromMilliseconds(10), t => { Fire(10); activeInsideCallback = t.IsActive; }, accuracy: TimeSpan.Zero);
        _loop.AddSlimTimer(TimeSpan.FromMilliseconds(20), _ => Fire(20), accuracy: TimeSpan.Zero, clock: LoopClock.Realtime);
        if (OperatingSystem.IsLinux())
            _loop.AddSlimTimer(TimeSpan.FromMilliseconds(25), _ => Fire(25), accuracy: TimeSpan.Zero, clock: LoopClock.Boottime);
        Assert.That(ten.IsActive, Is.True);
        RunUntil(() => fired.Count == (OperatingSystem.IsLinux() ? 4 : 3));
        Assert.That(fired, Is.EquivalentTo(OperatingSystem.IsLinux() ? new[] { 10, 20, 25, 30 } : new[] { 10, 20, 30 }));
        // Deadline order across clocks: a timer never fires in an earlier iteration than one due before it. Two due
        // in the same iteration (an iteration late by more than the 5 ms between them, on a loaded machine) run in
        // the order their clocks are collected, which is no promise.
        var byDeadline = iteration.OrderBy(p => p.Key).Select(p => p.Value).ToList();
        Assert.That(byDeadline, Is.Ordered, $"iterations by deadline: {string.Join(", ", iteration.OrderBy(p => p.Key))}");
        Assert.That(activeInsideCallback, Is.False, "a oneshot running its callback is no longer armed");
        Assert.That(ten.IsActive, Is.False);
        Assert.Throws<ObjectDisposedException>(() => ten.SetDelay(TimeSpan.FromMilliseconds(1)), "its record was freed");
        Assert.That(_loop.TimerTable.LiveCount, Is.Zero, "every fired oneshot gave its record back");
    }

    [Test]
    public void AStaleHandleCannotTouchTheTimerThatReusedItsRecord()
    {
        var first = _loop.AddSlimTimer(TimeSpan.FromHours(1), _ => { });
        first.Dispose();
        int runs = 0;
        var second = _loop.AddSlimTimer(TimeSpan.Zero, _ => runs++, accuracy: TimeSpan.Zero);
        Assert.That(second, Is.Not.EqualTo(first), "the record is reused under a new generation");
        first.Dispose(); // stale: must not cancel the second timer
        Assert.That(first.IsActive, Is.False);
        Assert.Throws<ObjectDisposedException>(() => _ = first.Deadline);
        Assert.That(second.IsActive, Is.True);
        RunUntil(() => runs == 1);
        Assert.That(default(SlimTimer).IsActive, Is.False);
        default(SlimTimer).Dispose(); // does nothing
    }

    [Test]
    public void CallbacksDisposeOtherSlimTimersAndThemselvesAndRearmThemselves()
    {
        int victimRuns = 0, rearmed = 0, selfDisposingRuns = 0, sourceRuns = 0;
        var victim = _loop.AddSlimTimer(TimeSpan.Zero, _ => victimRuns++, accuracy: TimeSpan.Zero, priority: 5);
        var victimSource = _loop.AddTimer(TimeSpan.Zero, _ => sourceRuns++, accuracy: TimeSpan.Zero, priority: 6);
        _loop.AddSlimTimer(TimeSpan.Zero, t =>
        {
            victim.Dispose();       // due in this very iteration: must not run
            victimSource.Dispose(); // a TimerSource in the same table: likewise
            if (++rearmed < 3)
                t.SetDelay(TimeSpan.FromMilliseconds(1)); // a oneshot re-armed by its own callback is kept
        }, accuracy: TimeSpan.Zero, priority: 0);
        _loop.AddSlimTimer(TimeSpan.Zero, t => { selfDisposingRuns++; t.Dispose(); }, accuracy: TimeSpan.Zero, period: TimeSpan.FromMilliseconds(1));
        Thread.Sleep(2);
        RunUntil(() => rearmed == 3);
        for (int i = 0; i < 3; i++)
            _loop.RunOnce(TimeSpan.FromMilliseconds(5));
        Assert.That((victimRuns, sourceRuns, selfDisposingRuns), Is.EqualTo((0, 0, 1)));
        Assert.That(_loop.TimerTable.LiveCount, Is.Zero);
    }

    [Test]
    public void ARepeatingSlimTimerCountsFromItsPreviousDeadlineSoItDoesNotDrift()
    {
        var period = TimeSpan.FromMilliseconds(20);
        var deadlines = new List<TimeSpan>();
        var timer = _loop.AddSlimTimer(period, t => deadlines.Add(t.Deadline), accuracy: TimeSpan.Zero, period: period);
        RunUntil(() => deadlines.Count >= 6);
        timer.Dispose();
        // Each run sees its next deadline; counting from "now" instead would add the lateness of every run,
        // so no step would be exactly one period. A run late by more than a period (a loaded machine) skips.
        int exact = 0;
        for (int i = 1; i < deadlines.Count; i++)
            exact += deadlines[i] - deadlines[i - 1] == period ? 1 : 0;
        Assert.That(exact, Is.GreaterThanOrEqualTo((deadlines.Count - 1) / 2), string.Join(", ", deadlines));
        Assert.That(timer.IsActive, Is.False);
    }

    [Test]
    public void SlimTimersTakeTheirTurnByPriorityAmongOtherSources()
    {
        var order = new List<string>();
        _loop.AddTimer(TimeSpan.Zero, _ => order.Add("source:2"), accuracy: TimeSpan.Zero, priority: 2);
        _loop.AddSlimTimer(TimeSpan.Zero, _ => order.Add("slim:1"), accuracy: TimeSpan.Zero, priority: 1);
        _loop.AddSlimTimer(TimeSpan.Zero, _ => order.Add("slim:3"), accuracy: TimeSpan.Zero, priority: 3);
        _loop.AddDefer(d => { order.Add("defer:0"); d.Dispose(); }, priority: 0);
        Thread.Sleep(1);
        RunUntil(() => order.Count == 4);
        Assert.That(order, Is.EqualTo(new[] { "defer:0", "slim:1", "source:2", "slim:3" }));
    }

    [Test]
    public void AThrowingSlimTimerStopsTheLoopWithEventLoopException()
    {
        _loop.AddSlimTimer(TimeSpan.Zero, _ => throw new InvalidOperationException("boom"), accuracy: TimeSpan.Zero);
        Thread.Sleep(1);
        var thrown = Assert.Throws<EventLoopException>(() => _loop.RunOnce(TimeSpan.FromMilliseconds(50)));
        Assert.That(thrown!.FailedSource, Is.Null);
        Assert.That(thrown.Message, Does.Contain("slim timer"));
        Assert.That(thrown.InnerException, Is.TypeOf<InvalidOperationException>());
    }

    [Test]
    public void AddingAndCancellingSlimTimersAllocatesNothingAndARecordFitsIn64BytesWithItsHeapEntry()
    {
        Action<SlimTimer> nothing = static _ => { };
        var timers = new SlimTimer[1000];
        for (int round = 0; round < 2; round++) // the first round grows the arrays
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < timers.Length; i++)
                timers[i] = _loop.AddSlimTimer(TimeSpan.FromHours(1), nothing);
            for (int i = 0; i < timers.Length; i++)
                timers[i].Dispose();
            if (round == 1)
                Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
        }
        Assert.That(Unsafe.SizeOf<TimerRecord>() + sizeof(int), Is.LessThanOrEqualTo(64), "record + its entry in one heap");
    }

    [Test]
    public void TimersOfManyAccuraciesAreTakenInDeadlineOrderAndNeverWakeTheLoopLate()
    {
        // More distinct accuracies than one clock keeps groups for: the extra ones share a group with a
        // smaller accuracy, which may only wake the loop earlier than their latest moment, never later.
        var table = new TimerTable();
        long now = 1_000_000_000, earliestLatest = long.MaxValue;
        var random = new Random(7);
        for (int i = 0; i < TimerTable.MaxGroups * 3; i++)
        {
            long deadline = now + random.Next(1, 1_000_000);
            long accuracy = (TimerTable.MaxGroups * 3 - i) * 100_000L; // descending: the worst case for fallback
            table.Add(LoopClock.Monotonic, deadline, deadline + accuracy, 0, this, 0);
            earliestLatest = Math.Min(earliestLatest, deadline + accuracy);
            Assert.That(table.EarliestLatest(LoopClock.Monotonic), Is.LessThanOrEqualTo(earliestLatest), $"after {i + 1} timers");
        }
        long previous = long.MinValue;
        int taken = 0;
        for (int slot; (slot = table.FirstDue(LoopClock.Monotonic, long.MaxValue, out _)) >= 0; taken++)
        {
            Assert.That(table[slot].Deadline, Is.GreaterThanOrEqualTo(previous), "deadline order across accuracy groups");
            previous = table[slot].Deadline;
            table.Free(slot);
        }
        Assert.That((taken, table.LiveCount, table.ArmedCount(LoopClock.Monotonic)), Is.EqualTo((TimerTable.MaxGroups * 3, 0, 0)));
    }

    /// <summary>Timers armed since the heaps were last read sit past their heap, unsorted, until a read sifts them
    /// in: adds and cancels interleaved with reads, in every mix, must leave exactly the timers not cancelled, taken
    /// in deadline order, with every cancel taking out its own timer (a stale heap place would take out another).</summary>
    [Test]
    public void AddsAndCancelsBetweenReadsOfTheHeapsLeaveExactlyTheOtherTimersInDeadlineOrder()
    {
        var table = new TimerTable();
        var random = new Random(11);
        var armed = new Dictionary<int, long>(); // slot -> deadline
        for (int step = 0; step < 20_000; step++)
        {
            int what = random.Next(10);
            if (what < 5 || armed.Count == 0)
            {
                long deadline = 1_000 + random.Next(1_000);
                armed[table.Add(LoopClock.Monotonic, deadline, deadline, 0, this, 0)] = deadline;
            }
            else if (what < 9)
            {
                int slot = armed.Keys.ElementAt(random.Next(armed.Count));
                table.Free(slot);
                armed.Remove(slot);
            }
            else
            {
                table.EarliestLatest(LoopClock.Monotonic); // a read: sifts the unsorted ones in
            }
        }
        for (int i = 0; i < 3; i++) // the earliest of all still unsorted when the heap is next read
            armed[table.Add(LoopClock.Monotonic, 500 + i, 500 + i, 0, this, 0)] = 500 + i;
        for (int slot; (slot = table.FirstDue(LoopClock.Monotonic, long.MaxValue, out _)) >= 0;)
        {
            long earliest = armed.Values.Min();
            Assert.That(armed.Remove(slot, out long deadline), Is.True, $"record {slot} came out but was cancelled or taken");
            Assert.That(deadline, Is.EqualTo(earliest), "the earliest deadline of those left");
            table.Free(slot);
        }
        Assert.That((armed.Count, table.LiveCount, table.ArmedCount(LoopClock.Monotonic)), Is.EqualTo((0, 0, 0)), "every armed timer came out once");
    }

    /// <summary>Every way the loop changes or reads the slim timers' heaps, mixed at random on two clocks with more
    /// accuracies than a clock keeps groups for: adds, cancels (armed or due), moves (SetDeadline: out of the heap or
    /// its unsorted tail and back in), due collection with a repeating re-arm or a oneshot's free, and reads of the
    /// wake time. Against a model: the due ones come out earliest first and none early, the wake time is exactly the
    /// earliest root's deadline + its group's accuracy (never later than a timer's latest moment), and the counts
    /// match; a heap read that skipped the unsorted tail would wake the loop late.</summary>
    [Test]
    public void EveryHeapOperationMixedAcrossGroupsAndClocksMatchesAModel()
    {
        var table = new TimerTable();
        var random = new Random(5);
        var clocks = new[] { LoopClock.Monotonic, LoopClock.Realtime };
        var armed = new Dictionary<int, LoopClock>(); // slot -> clock, records in a heap
        var due = new List<int>(); // records taken as due, not yet run
        long Accuracy() => random.Next(TimerTable.MaxGroups + 4) * 7L; // more accuracies than groups
        void Check(LoopClock clock, int step)
        {
            long expected = long.MaxValue, latest = long.MaxValue;
            foreach (var (slot, c) in armed)
            {
                if (c != clock)
                    continue;
                ref var record = ref table[slot];
                expected = Math.Min(expected, record.Deadline + table.GroupAccuracy(clock, record.Group));
                latest = Math.Min(latest, record.Latest);
            }
            long earliestLatest = table.EarliestLatest(clock);
            Assert.That(earliestLatest, Is.EqualTo(expected), $"{clock} wake time at step {step}");
            Assert.That(earliestLatest, Is.LessThanOrEqualTo(latest), $"{clock} never late, step {step}");
            Assert.That(table.ArmedCount(clock), Is.EqualTo(armed.Values.Count(c => c == clock)), $"{clock} armed, step {step}");
            Assert.That(table.LiveCount, Is.EqualTo(armed.Count + due.Count), $"live, step {step}");
        }
        for (int step = 0; step < 20_000; step++)
        {
            var clock = clocks[random.Next(clocks.Length)];
            int what = random.Next(20);
            if (what < 8 || armed.Count == 0)
            {
                long deadline = 1_000 + random.Next(1_000);
                armed[table.Add(clock, deadline, deadline + Accuracy(), 0, this, 0)] = clock;
            }
            else if (what < 12)
            {
                // A cancel, of an armed record or of one due but not yet run (disposed by an earlier callback).
                if (due.Count > 0 && random.Next(4) == 0)
                {
                    int slot = due[random.Next(due.Count)];
                    table.Free(slot);
                    due.Remove(slot);
                }
                else
                {
                    int slot = armed.Keys.ElementAt(random.Next(armed.Count));
                    table.Free(slot);
                    armed.Remove(slot);
                }
            }
            else if (what < 15)
            {
                // SetDeadline's steps on an armed record (in the heap proper or its tail) or a due one.
                bool ofDue = due.Count > 0 && random.Next(4) == 0;
                int slot = ofDue ? due[random.Next(due.Count)] : armed.Keys.ElementAt(random.Next(armed.Count));
                table.Disarm(slot);
                ref var record = ref table[slot];
                record.Deadline = 1_000 + random.Next(1_000);
                record.Latest = record.Deadline + Accuracy();
                table.Arm(slot);
                if (ofDue)
                    due.Remove(slot);
                armed[slot] = (LoopClock)record.Clock;
            }
            else if (what < 17)
            {
                Check(clock, step);
            }
            else
            {
                // An iteration's due collection, then its dispatch: a repeating timer re-armed, a oneshot freed.
                long now = 1_000 + random.Next(1_000);
                for (int slot; (slot = table.FirstDue(clock, now, out _)) >= 0;)
                {
                    long earliest = armed.Where(a => a.Value == clock).Min(a => table[a.Key].Deadline);
                    Assert.That(armed.Remove(slot), Is.True, $"record {slot} came out but is not armed, step {step}");
                    Assert.That(table[slot].Deadline, Is.EqualTo(earliest).And.LessThanOrEqualTo(now), $"earliest first, none early, step {step}");
                    table.Disarm(slot);
                    due.Add(slot);
                }
                Assert.That(armed.Where(a => a.Value == clock).All(a => table[a.Key].Deadline > now), Is.True, $"every due one taken, step {step}");
                foreach (int slot in due.ToArray())
                {
                    int fate = random.Next(3);
                    if (fate == 0)
                        continue; // not run yet: a later step may move or cancel it while due
                    due.Remove(slot);
                    if (fate == 1)
                    {
                        table.Free(slot);
                        continue;
                    }
                    ref var record = ref table[slot];
                    record.Deadline += 1 + random.Next(500);
                    record.Latest = record.Deadline + Accuracy();
                    table.Arm(slot);
                    armed[slot] = (LoopClock)record.Clock;
                }
            }
        }
        foreach (var clock in clocks)
            Check(clock, -1);
        foreach (int slot in armed.Keys.Concat(due).ToArray())
            table.Free(slot);
        Assert.That((table.LiveCount, table.ArmedCount(LoopClock.Monotonic), table.ArmedCount(LoopClock.Realtime)), Is.EqualTo((0, 0, 0)));
    }

    /// <summary>A timer added after a later one, both still in the unsorted tail of their heap, sets the wait: the
    /// wait's timeout (monotonic) or the absolute kernel timer (realtime, boottime) must come from the sorted heap,
    /// not from whichever record was armed first. Read wrongly, the loop sleeps the whole 10 s of RunOnce.</summary>
    [TestCase(LoopClock.Monotonic)]
    [TestCase(LoopClock.Realtime)]
    [TestCase(LoopClock.Boottime)]
    public void ATimerArmedAfterALaterOneWakesTheLoopOnTimeOnEveryClock(LoopClock clock)
    {
        if (clock == LoopClock.Boottime && !BootClock.IsAvailable)
            Assert.Ignore("CLOCK_BOOTTIME exists on Linux only");
        bool fired = false;
        using var later = _loop.AddSlimTimer(TimeSpan.FromHours(1), _ => { }, accuracy: TimeSpan.Zero, clock: clock);
        using var sooner = _loop.AddSlimTimer(TimeSpan.FromMilliseconds(200), _ => fired = true, accuracy: TimeSpan.Zero, clock: clock);
        var elapsed = System.Diagnostics.Stopwatch.StartNew();
        while (!fired && elapsed.Elapsed < TimeSpan.FromSeconds(5))
            _loop.RunOnce(TimeSpan.FromSeconds(10));
        Assert.That((fired, elapsed.Elapsed < TimeSpan.FromSeconds(5)), Is.EqualTo((true, true)),
            $"the 200 ms timer fired, and the loop did not sleep past it ({elapsed.Elapsed})");
    }
}
