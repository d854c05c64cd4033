using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>Where docs/LOOP.md promises sd-event's behaviour and the loop did otherwise (issue 22's findings 2-5),
/// each restated from systemd's sd-event.c and test-event.c: a nested run is refused (-EBUSY there), a timer moved
/// by an earlier callback of the same iteration fires at its new deadline, a oneshot source is switched off before
/// its callback (so the callback can switch it on again: TEST(basic)), and an exit source that throws neither
/// stops the other exit sources nor hides the failure that stopped the loop.</summary>
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed class LoopSdEventBehaviourTests(BackendProvider backend)
{
    [Test]
    public void RunningTheLoopFromOneOfItsCallbacksIsRefusedAndDropsNothing()
    {
        using var loop = LoopTests.NewLoop(backend);
        Exception? nested = null;
        int later = 0;
        loop.AddDefer(d =>
        {
            d.State = SourceState.Off;
            try
            {
                loop.RunOnce(TimeSpan.Zero);
            }
            catch (Exception e)
            {
                nested = e;
            }
        }, priority: -1);
        var second = loop.AddDefer(d => { later++; d.State = SourceState.Off; }, priority: 1);
        loop.RunOnce(TimeSpan.Zero);
        Assert.That(nested, Is.TypeOf<InvalidOperationException>());
        Assert.That(later, Is.EqualTo(1), "the outer iteration's next callback still ran");
    }

    [Test]
    public void ATimerMovedByAnEarlierCallbackOfTheIterationFiresAtItsNewDeadline()
    {
        using var loop = LoopTests.NewLoop(backend);
        var fired = new List<TimeSpan>();
        var moved = loop.AddTimer(TimeSpan.FromMilliseconds(20), t => fired.Add(loop.Now(LoopClock.Monotonic)), accuracy: TimeSpan.Zero, priority: 1);
        var newDeadline = TimeSpan.Zero;
        loop.AddTimer(TimeSpan.FromMilliseconds(20), _ =>
        {
            newDeadline = loop.Now(LoopClock.Monotonic) + TimeSpan.FromMilliseconds(200);
            moved.SetDeadline(newDeadline);
        }, accuracy: TimeSpan.Zero, priority: -1);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (newDeadline == TimeSpan.Zero && clock.Elapsed < TimeSpan.FromSeconds(5))
            loop.RunOnce(TimeSpan.FromSeconds(1));
        Assert.That(newDeadline, Is.Not.Zero, "the first timer fired");
        Assert.That(fired, Is.Empty, "the moved timer fired at its old deadline");
        while (fired.Count == 0 && clock.Elapsed < TimeSpan.FromSeconds(5))
            loop.RunOnce(TimeSpan.FromSeconds(1));
        Assert.That(fired, Has.Count.EqualTo(1), "the moved timer's new deadline was lost");
        Assert.That(fired[0], Is.GreaterThanOrEqualTo(newDeadline));
    }

    /// <summary>test-event.c TEST(basic): a oneshot source re-enables itself from its callback and runs again.</summary>
    [Test]
    public void AOneshotSourceCanSwitchItselfBackOnFromItsCallback()
    {
        using var loop = LoopTests.NewLoop(backend);
        int runs = 0;
        var defer = loop.AddDefer(d =>
        {
            runs++;
            Assert.That(d.State, Is.EqualTo(SourceState.Off), "switched off before its callback, as sd-event does");
            if (runs == 1)
                d.State = SourceState.Oneshot;
        }, state: SourceState.Oneshot);
        for (int i = 0; i < 4; i++)
            loop.RunOnce(TimeSpan.Zero);
        Assert.That(runs, Is.EqualTo(2));
        Assert.That(defer.State, Is.EqualTo(SourceState.Off));
    }

    [Test]
    public void AnExitSourceThatThrowsLetsTheOthersRunAndItsFailureIsReported()
    {
        using var loop = LoopTests.NewLoop(backend);
        var ran = new List<string>();
        var boom = new InvalidOperationException("exit source failed");
        loop.AddExit(_ => { ran.Add("first"); throw boom; }, priority: -1, description: "thrower");
        loop.AddExit(_ => ran.Add("second"), priority: 1);
        loop.Exit();
        var e = Assert.Throws<EventLoopException>(() => loop.Run())!;
        Assert.That(e.InnerException, Is.SameAs(boom));
        Assert.That(ran, Is.EqualTo(new[] { "first", "second" }));
    }

    [Test]
    public void AFailureThatStopsTheLoopIsNotHiddenByAThrowingExitSource()
    {
        using var loop = LoopTests.NewLoop(backend);
        var ran = new List<string>();
        var original = new InvalidOperationException("the callback failed");
        loop.AddDefer(_ => throw original);
        loop.AddExit(_ => { ran.Add("first"); throw new InvalidOperationException("exit source failed"); }, priority: -1);
        loop.AddExit(_ => ran.Add("second"), priority: 1);
        var e = Assert.Throws<EventLoopException>(() => loop.Run())!;
        Assert.That(e.InnerException, Is.SameAs(original), "the first exception is kept");
        Assert.That(ran, Is.EqualTo(new[] { "first", "second" }));
    }
}
