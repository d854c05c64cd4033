using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>A TimerSource keeps in its object only what every timer needs; its accuracy is its group's, and its
/// description, priority, period and a groupless accuracy live in a side object. What it reports and how it is
/// dispatched do not depend on where a value is kept.</summary>
public sealed class LoopTimerSourceTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private static void RunUntil(EventLoop loop, Func<bool> done)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!done() && clock.Elapsed < Deadline)
            loop.RunOnce(TimeSpan.FromMilliseconds(50));
        Assert.That(done(), Is.True, "the loop did not get there in time");
    }

    /// <summary>More accuracies on one clock than it keeps groups for: the extra timers share a group whose accuracy
    /// is another, and still report their own, also after <see cref="TimerSource.SetDeadline"/> moves them to a group
    /// of their own accuracy and back. All of them fire.</summary>
    [Test]
    public void ATimerReportsItsOwnAccuracyEvenWhenItSharesAGroupOfAnother()
    {
        using var loop = new EventLoop(PollerFactory.Create());
        const int Count = TimerTable.MaxGroups * 2;
        var timers = new List<TimerSource>();
        int fired = 0;
        for (int i = 0; i < Count; i++)
        {
            var accuracy = TimeSpan.FromMilliseconds(Count - i); // descending: the extra ones fall back to another group
            timers.Add(loop.AddTimer(TimeSpan.FromMilliseconds(1), _ => fired++, accuracy: accuracy));
        }
        for (int i = 0; i < Count; i++)
            Assert.That(timers[i].Accuracy, Is.EqualTo(TimeSpan.FromMilliseconds(Count - i)), $"timer {i}");
        var last = timers[^1];
        last.SetDeadline(last.Deadline, TimeSpan.FromMilliseconds(Count)); // an accuracy with a group of its own
        Assert.That(last.Accuracy, Is.EqualTo(TimeSpan.FromMilliseconds(Count)));
        last.SetDeadline(last.Deadline, TimeSpan.FromMicroseconds(1500)); // one without
        Assert.That(last.Accuracy, Is.EqualTo(TimeSpan.FromMicroseconds(1500)));
        RunUntil(loop, () => fired == Count);
        Assert.That(timers.All(t => t.State == SourceState.Off), Is.True, "every oneshot ran once and is off");
    }

    /// <summary>The values a timer keeps in its side object read back as set, and as the defaults when never set; a
    /// priority set there orders the dispatch as a priority kept in a field does.</summary>
    [Test]
    public void WhatATimerKeepsOutOfLineReadsBackAndOrdersTheDispatch()
    {
        using var loop = new EventLoop(PollerFactory.Create());
        var order = new List<string>();
        var plain = loop.AddTimer(TimeSpan.Zero, _ => order.Add("plain"));
        Assert.That((plain.Priority, plain.Description, plain.Accuracy), Is.EqualTo((0, nameof(TimerSource), TimerSource.DefaultAccuracy)));
        var urgent = loop.AddTimer(TimeSpan.Zero, _ => order.Add("urgent"), priority: -3, description: "urgent");
        var repeating = loop.AddTimer(TimeSpan.Zero, t => { order.Add("repeating"); t.Dispose(); }, period: TimeSpan.FromHours(1), priority: 2);
        Assert.That((urgent.Priority, urgent.Description), Is.EqualTo((-3, "urgent")));
        Assert.That((repeating.Priority, repeating.State), Is.EqualTo((2, SourceState.On)), "a period makes it repeat");
        plain.Priority = 1;
        plain.Description = "plain";
        Assert.That((plain.Priority, plain.Description), Is.EqualTo((1, "plain")));
        RunUntil(loop, () => order.Count == 3);
        Assert.That(order, Is.EqualTo(new[] { "urgent", "plain", "repeating" }), "priority order: -3, 1, 2");
        plain.Priority = 0;
        Assert.That(plain.Priority, Is.Zero, "back to the default");
    }

    /// <summary>Sources keep no creation number (a TimerSource has no room for one): prepare callbacks of equal priority
    /// run in the order they were set, and exit sources of equal priority in the order they were added.</summary>
    [Test]
    public void EqualPrioritiesRunInTheOrderTheCallbacksWereSetOrTheSourcesAdded()
    {
        using var loop = new EventLoop(PollerFactory.Create());
        var order = new List<string>();
        var timer = loop.AddTimer(TimeSpan.FromHours(1), _ => { }); // made first
        var defer = loop.AddDefer(_ => { }, state: SourceState.Off);
        defer.PrepareCallback = _ => order.Add("defer"); // set first
        defer.State = SourceState.On;
        timer.PrepareCallback = _ => order.Add("timer");
        loop.RunOnce(TimeSpan.Zero);
        Assert.That(order, Is.EqualTo(new[] { "defer", "timer" }), "prepare callbacks in the order they were set");
        order.Clear();
        loop.AddExit(_ => order.Add("first"));
        loop.AddExit(_ => order.Add("second"));
        loop.AddExit(_ => order.Add("urgent"), priority: -1);
        loop.Exit(0);
        Assert.That(loop.RunOnce(TimeSpan.Zero), Is.False, "exited: the exit sources ran, no iteration");
        Assert.That(order, Is.EqualTo(new[] { "urgent", "first", "second" }), "exit sources: priority, then the order added");
    }
}
