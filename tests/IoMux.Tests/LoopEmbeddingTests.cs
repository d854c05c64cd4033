using System.Diagnostics;
using IoMux.Backends.Epoll;
using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>An IoMux loop embedded in another (sd_event_get_fd with sd_event_prepare / sd_event_wait /
/// sd_event_dispatch): the inner loop, on epoll, gives its descriptor to an outer loop on the backend under test, which
/// drives it from a prepare callback and an I/O source. The outer loop waits long (2 s per iteration), so the inner
/// loop's timer, I/O, defer and posted action can only be served on time if its descriptor wakes the outer wait.</summary>
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed class LoopEmbeddingTests(BackendProvider backend)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Test]
    public void ALoopEmbeddedInAnotherServesItsTimersIoDefersAndPostsThroughItsDescriptor()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("the embeddable descriptor is epoll's");
        using var outer = LoopTests.NewLoop(backend);
        using var inner = new EventLoop(new Poller(new EpollBackend()));
        LibC.CreateNonBlockingPipe(out int r, out int w);
        try
        {
            var clock = Stopwatch.StartNew();
            long timerAt = 0, ioAt = 0, postAt = 0;
            int defers = 0;
            inner.AddSlimTimer(TimeSpan.FromMilliseconds(300), _ => timerAt = clock.ElapsedMilliseconds, accuracy: TimeSpan.Zero);
            inner.AddIo(r, Interest.Readable, (s, _) =>
            {
                ReadByte(r);
                ioAt = clock.ElapsedMilliseconds;
                s.Dispose();
            });
            inner.AddDefer(_ => defers++, state: SourceState.Oneshot);

            LoopEmbedding.Embed(outer, inner);

            var writer = Task.Run(async () =>
            {
                await Task.Delay(100);
                WriteByte(w);
                await Task.Delay(1400); // well after the timer, so that the post cannot be what served it
                inner.Post(() => postAt = clock.ElapsedMilliseconds);
            });
            while ((timerAt == 0 || ioAt == 0 || postAt == 0) && clock.Elapsed < Deadline)
                outer.RunOnce(TimeSpan.FromSeconds(2));
            Assert.That(writer.Wait(Deadline), Is.True);
            Assert.That(defers, Is.EqualTo(1), "the inner defer ran once, without waiting for the outer timeout");
            Assert.That(ioAt, Is.InRange(90, 1500), "inner I/O woke the outer loop");
            // The outer loop's own wakes: the write (100 ms), the timer, the post; each sleep is up to 2 s, so a timer or a
            // post it did not see would run 2 s after the previous wake at the earliest.
            Assert.That(timerAt, Is.InRange(295, 1200), "the inner monotonic timer woke the outer loop through its timerfd");
            Assert.That(postAt, Is.InRange(1490, 2200), "a post to the inner loop woke the outer loop");
            Assert.That(inner.Iterations, Is.GreaterThanOrEqualTo(4));
        }
        finally
        {
            LibC.close(r);
            LibC.close(w);
        }
    }

    private static unsafe void WriteByte(int fd)
    {
        byte b = 1;
        LibC.write(fd, &b, 1);
    }

    private static unsafe void ReadByte(int fd)
    {
        byte b;
        LibC.read(fd, &b, 1);
    }

    /// <summary>The steps keep their order: Wait before Prepare, Dispatch without work, or RunOnce in the middle of a
    /// prepared iteration are refused; an inner Exit ends Dispatch with false after its exit sources.</summary>
    [Test]
    public void TheStepsKeepTheirOrderAndAnExitEndsDispatch()
    {
        using var loop = LoopTests.NewLoop(backend);
        Assert.Throws<InvalidOperationException>(() => loop.Wait(TimeSpan.Zero));
        Assert.Throws<InvalidOperationException>(() => loop.Dispatch());
        Assert.That(loop.Prepare(), Is.False, "nothing pending");
        Assert.That(loop.Prepare(), Is.False, "preparing again is allowed");
        Assert.Throws<InvalidOperationException>(() => loop.RunOnce(TimeSpan.Zero));
        Assert.That(loop.Wait(TimeSpan.Zero), Is.False, "no work: the iteration is over");
        int exits = 0;
        loop.AddExit(_ => exits++);
        loop.AddDefer(_ => loop.Exit(3), state: SourceState.Oneshot);
        Assert.That(loop.Prepare(), Is.True, "a defer is pending");
        Assert.That(loop.Wait(Deadline), Is.True);
        Assert.That(loop.Dispatch(), Is.False, "exited");
        Assert.That(exits, Is.EqualTo(1));
        Assert.That(loop.Run(), Is.EqualTo(3));
    }

    /// <summary>Only epoll's kernel object can be polled; the others say so.</summary>
    [Test]
    public void DescriptorIsEpollsOrNotSupported()
    {
        using var loop = LoopTests.NewLoop(backend);
        if (loop.Poller.Capabilities.Kind == BackendKind.Epoll)
            Assert.That(loop.Descriptor, Is.Positive);
        else
            Assert.Throws<NotSupportedException>(() => _ = loop.Descriptor);
    }
}
