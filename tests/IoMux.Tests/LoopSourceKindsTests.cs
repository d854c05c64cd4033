using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Interop;
using IoMux.Loop;
using NUnit.Framework;

namespace IoMux.Tests;

/// <summary>How the loop keeps its sources (EventLoop.Sources.cs): every kind of source goes with the loop, the
/// metric of sources found by their poller token counts those and only those, and signal sources keep their place
/// before defer sources at equal priorities.</summary>
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed unsafe class LoopSourceKindsTests(BackendProvider backend)
{
    private const int SIGUSR1 = 10; // Linux's number
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    /// <summary>One pending signal source and one defer source of the same priority, the defer added first: the signal
    /// callback runs first, as the loop collected them before its sources were kept by when they are visited (signals,
    /// then defers; the order added decides only within one kind).</summary>
    [Test]
    public void AtEqualPrioritiesAPendingSignalSourceRunsBeforeADeferSourceAddedEarlier()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("SIGUSR1 is 10 on Linux");
        using var loop = LoopTests.NewLoop(backend);
        var order = new List<string>();
        loop.AddDefer(_ => order.Add("defer"));
        var signal = loop.AddSignal((PosixSignal)SIGUSR1, (_, _) => order.Add("signal"));
        Assert.That(TestProcesses.Signal(Environment.ProcessId, SIGUSR1), Is.Zero);
        var clock = Stopwatch.StartNew();
        while (!signal.IsPending && clock.Elapsed < Deadline)
            Thread.Sleep(1);
        Assert.That(signal.IsPending, Is.True, "SIGUSR1 was not delivered");
        loop.RunOnce(TimeSpan.Zero);
        Assert.That(order, Is.EqualTo(new[] { "signal", "defer" }));
    }

    /// <summary>The iomux.loop.io_source.count metric counts the sources the poller reports by token (I/O here), not the
    /// defer, post, exit, signal and timer sources beside them, and follows their disposal.</summary>
    [Test]
    public void TheIoSourceCountCountsOnlyTheSourcesThePollerReports()
    {
        LibC.CreateNonBlockingPipe(out int r, out int w);
        try
        {
            using var loop = LoopTests.NewLoop(backend);
            var first = loop.AddIo(r, Interest.Readable, (_, _) => { });
            var defer = loop.AddDefer(_ => { }, state: SourceState.Off);
            loop.AddPost(_ => { });
            loop.AddExit(_ => { });
            loop.AddSignal(PosixSignal.SIGHUP, (_, _) => { });
            loop.AddTimer(TimeSpan.FromHours(1), _ => { });
            var second = loop.AddIo(w, Interest.Writable, (_, _) => { }, state: SourceState.Off);
            Assert.That(loop.IoSourceCount, Is.EqualTo(2), "two I/O sources, one of them off");
            first.Dispose();
            defer.Dispose();
            Assert.That(loop.IoSourceCount, Is.EqualTo(1));
            second.Dispose();
            second.Dispose(); // idempotent: counted out once
            Assert.That(loop.IoSourceCount, Is.Zero);
        }
        finally
        {
            LibC.close(r);
            LibC.close(w);
        }
    }

    /// <summary>Disposing the loop disposes a live source of every kind, with no destroy callback to find it by (an owned
    /// child is killed and reaped); a timer, which the loop keeps in its timer table, when it has a destroy callback,
    /// which runs once.</summary>
    [Test]
    public void DisposingTheLoopDisposesASourceOfEveryKind()
    {
        var loop = LoopTests.NewLoop(backend);
        var sources = new List<EventSource>();
        int child = -1, timerDestroyed = 0;
        LibC.CreateNonBlockingPipe(out int r, out int w);
        try
        {
            sources.Add(loop.AddIo(r, Interest.Readable, (_, _) => { }));
            sources.Add(loop.AddDefer(_ => { }));
            sources.Add(loop.AddPost(_ => { }));
            sources.Add(loop.AddExit(_ => { }));
            sources.Add(loop.AddSignal(PosixSignal.SIGHUP, (_, _) => { }));
            child = LoopChildTests.Spawn("sleep 30");
            var owned = loop.AddChild(child, (_, _) => { });
            owned.OwnsProcess = true; // the loop's disposal kills and reaps it
            sources.Add(owned);
            if (OperatingSystem.IsLinux())
                sources.Add(loop.AddInotify(Path.GetTempPath(), InotifyMask.Create, (_, _) => { }));
            var timer = loop.AddTimer(TimeSpan.FromHours(1), _ => { });
            timer.DestroyCallback = _ => timerDestroyed++;
            sources.Add(timer);
        }
        finally
        {
            loop.Dispose();
            LibC.close(r);
            LibC.close(w);
        }
        try
        {
            Assert.That(sources.Where(s => !s.IsDisposed).Select(s => s.Description), Is.Empty, "left undisposed");
            Assert.That(timerDestroyed, Is.EqualTo(1));
            // kill(pid, 0) fails (ESRCH) only once the child is reaped: a zombie still takes it.
            Assert.That(TestProcesses.Signal(child, 0), Is.Not.Zero, "the owned child was killed and reaped");
        }
        finally
        {
            if (child > 0)
                LoopChildTests.KillAndReap(child); // nothing to do when the loop reaped it
        }
    }
}
