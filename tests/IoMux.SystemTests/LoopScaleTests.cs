using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>Scale: a million armed timers, no kernel object each.</summary>
public sealed class LoopScaleTests
{
    [Test]
    [CancelAfter(60_000)]
    public void AMillionArmedTimersAllFireInOrderWithFewWakeups()
    {
        using var loop = new EventLoop(PollerFactory.Create());
        const int Count = 1_000_000;
        int fired = 0;
        long lastDeadline = long.MinValue;
        bool inOrder = true;
        var random = new Random(42);
        for (int i = 0; i < Count; i++)
        {
            loop.AddTimer(TimeSpan.FromMilliseconds(random.NextDouble() * 200), t =>
            {
                fired++;
                inOrder &= t.Deadline >= lastDeadline || t.Deadline - lastDeadline > -10_000_000; // within one accuracy window
                lastDeadline = Math.Max(lastDeadline, t.Deadline);
            }, accuracy: TimeSpan.FromMilliseconds(10));
        }
        long waits = loop.Poller.Counters.KernelWaits;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (fired < Count && clock.Elapsed < TimeSpan.FromSeconds(30))
            loop.RunOnce(TimeSpan.FromSeconds(1));
        Assert.That(fired, Is.EqualTo(Count));
        Assert.That(inOrder, Is.True, "timers ran in deadline order, give or take their accuracy");
        Assert.That(loop.Poller.Counters.KernelWaits - waits, Is.LessThan(200), "a 200 ms spread with 10 ms accuracy needs about 20 wakeups, not one per timer");
    }
}
