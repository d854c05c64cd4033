using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Tests;

// The test-event.c cases that issue 22's decisions made restatable: the dispatch order (TEST(defer_add_post), which
// shows the documented difference), descriptor ownership (TEST(sd_event_source_set_io_fd)), and the inotify cases about
// buffered events and shared watches (TEST(inotify_process_buffered_data), TEST(inotify_issue_38265)).
public sealed unsafe partial class SdEventRestatedTests
{
    // ---- TEST(defer_add_post) ----

    /// <summary>TEST(defer_add_post): a defer source (oneshot by default, in both loops) adds a post source from its
    /// callback. sd-event dispatches one source per sd_event_run, so the post waits for the second run; IoMux dispatches
    /// the iteration's pending sources as a batch and then the post sources, the new one included, so it ran by the end
    /// of the first iteration (the documented difference, docs/LOOP.md row 3). The relative order is the same: defer,
    /// then post; the defer does not run again.</summary>
    [Test]
    public void DeferAddPost_APostSourceAddedByADeferRunsAfterIt()
    {
        using var loop = LoopTests.NewLoop(backend);
        var trail = new List<string>();
        loop.AddDefer(d =>
        {
            trail.Add("defer");
            loop.AddPost(_ => trail.Add("post"));
        });
        loop.RunOnce(TimeSpan.FromSeconds(1));
        Assert.That(trail, Is.EqualTo(new[] { "defer", "post" }), "sd-event: only the defer by now, the post at the next run");
        loop.RunOnce(TimeSpan.Zero);
        Assert.That(trail, Is.EqualTo(new[] { "defer", "post" }), "nothing else was dispatched, so no post source runs");
    }

    /// <summary>TEST(basic)'s three sd_event_run calls, in sd-event's own order: with the loop's internal one-per-iteration
    /// mode (kept to measure the two orders against each other, docs/LOOP.md row 3) each iteration dispatches one source,
    /// b, then c, then a, as each of sd-event's runs does; the sources not yet run stay pending and the iterations in
    /// between do not sleep.</summary>
    [Test]
    public void Basic_OneSourcePerIterationDispatchesAsSdEventsRunsDo()
    {
        using var loop = LoopTests.NewLoop(backend);
        loop.DispatchOnePerIteration = true;
        var a = Pipe();
        var b = Pipe();
        var order = new List<char>();
        loop.AddIo(a.Read, Interest.Readable, (s, _) => { s.State = SourceState.Off; order.Add('a'); }, priority: 99);
        loop.AddIo(b.Read, Interest.Readable, (_, _) => order.Add('b'), state: SourceState.Oneshot);
        loop.AddTimerAt(TimeSpan.Zero, _ => order.Add('c'), accuracy: TimeSpan.Zero, priority: 50);
        WriteByte(a.Write);
        WriteByte(b.Write);
        var seen = new List<string>();
        for (int i = 0; i < 3; i++)
        {
            loop.RunOnce(TimeSpan.FromSeconds(5)); // a pending source makes the wait zero; five seconds would fail the test below
            seen.Add(new string(order.ToArray()));
        }
        Assert.That(seen, Is.EqualTo(new[] { "b", "bc", "bca" }));
        RunIdle(loop);
        Assert.That(order, Has.Count.EqualTo(3), "each ran once");
    }

    // ---- TEST(sd_event_source_set_io_fd) ----

    /// <summary>TEST(sd_event_source_set_io_fd): a source on pipe a's read end is made to own it
    /// (sd_event_source_set_io_fd_own), then moved to pipe b's read end (sd_event_source_set_io_fd), which it owns from
    /// then on. Restated with what sd-event's test leaves to its cleanup checked: a's read end is closed by the move, the
    /// source reports b's readiness, and disposing the source closes b's read end.</summary>
    [Test]
    public void SdEventSourceSetIoFd_AnOwningSourceClosesTheDescriptorItLeavesAndTheOneItHasAtTheEnd()
    {
        using var loop = LoopTests.NewLoop(backend);
        var a = Pipe();
        var b = Pipe();
        var ready = new List<int>();
        var s = loop.AddIo(a.Read, Interest.Readable, (src, _) =>
        {
            ready.Add(src.Descriptor);
            byte x;
            LibC.read(src.Descriptor, &x, 1);
        });
        s.OwnsDescriptor = true;
        _fds.Remove(a.Read); // TAKE_FD: the source owns it now
        s.SetDescriptor(b.Read);
        _fds.Remove(b.Read);
        Assert.That(s.Descriptor, Is.EqualTo(b.Read));
        Assert.That(LoopPortingDecisionsTests.ReaderGone(a.Write), Is.True, "the descriptor the source left was closed");
        WriteByte(b.Write);
        Assert.That(RunUntil(loop, () => ready.Count > 0), Is.True, "the new descriptor's readiness was not reported");
        Assert.That(ready, Is.EqualTo(new[] { b.Read }));
        s.Dispose();
        Assert.That(LoopPortingDecisionsTests.ReaderGone(b.Write), Is.True, "disposing the owning source closed its descriptor");
    }

    // ---- TEST(inotify_process_buffered_data) ----

    /// <summary>TEST(inotify_process_buffered_data) (systemd issue #23826): two inotify sources on two directories, a
    /// file created in each; the events are dispatched in order, each source's once, and afterwards nothing is pending:
    /// prepare says so and a zero wait finds nothing. sd-event needs a run and then a prepare/dispatch for the second
    /// (its buffered data); IoMux's one iteration dispatches both (row 3).</summary>
    [Test]
    public void InotifyProcessBufferedData_EventsOfTwoSourcesAreDispatchedOnceEachAndNothingIsLeft()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("inotify is Linux's");
        using var loop = LoopTests.NewLoop(backend);
        string p = Directory.CreateTempSubdirectory("test-inotify-").FullName;
        string q = Directory.CreateTempSubdirectory("test-inotify-").FullName;
        try
        {
            var seen = new List<string>();
            loop.AddInotify(p, InotifyMask.Create, (src, _) => seen.Add(src.Description), description: p);
            loop.AddInotify(q, InotifyMask.Create, (src, _) => seen.Add(src.Description), description: q);
            File.WriteAllBytes(Path.Combine(p, "aaa"), []);
            File.WriteAllBytes(Path.Combine(q, "bbb"), []);
            Assert.That(RunUntil(loop, () => seen.Count >= 2), Is.True, $"seen: {string.Join(", ", seen)}");
            Assert.That(seen, Is.EqualTo(new[] { p, q }));
            Assert.That(loop.Prepare(), Is.False, "nothing pending after the dispatch (issue #23826: sd-event said otherwise)");
            Assert.That(loop.Wait(TimeSpan.Zero), Is.False);
            Assert.That(seen, Has.Count.EqualTo(2));
        }
        finally
        {
            Directory.Delete(p, recursive: true);
            Directory.Delete(q, recursive: true);
        }
    }

    // ---- TEST(inotify_issue_38265) ----

    /// <summary>TEST(inotify_issue_38265): two sources watch one directory, the first also for IN_MODIFY; it is dropped,
    /// then a file is created and written (IN_CREATE and IN_MODIFY). sd-event shares one inotify watch between them and
    /// crashed on the IN_MODIFY that no remaining source asked for; here each source has its own instance. The loop runs
    /// its iterations, the remaining source gets IN_CREATE and never an event it did not ask for.</summary>
    [Test]
    public void InotifyIssue38265_AnEventOnlyADroppedSourceAskedForReachesNobody()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("inotify is Linux's");
        using var loop = LoopTests.NewLoop(backend);
        string t = Directory.CreateTempSubdirectory("test-inotify-").FullName;
        try
        {
            var masks = new List<InotifyMask>();
            var a = loop.AddInotify(t, InotifyMask.Create | InotifyMask.Modify, (_, _) => Assert.Fail("the dropped source ran"));
            loop.AddInotify(t, InotifyMask.Create, (_, e) => masks.Add(e.Mask));
            a.Dispose();
            File.WriteAllText(Path.Combine(t, "hoge"), "aaa");
            Assert.That(RunUntil(loop, () => masks.Count > 0), Is.True);
            for (int i = 1; i < 5; i++)
                loop.RunOnce(TimeSpan.FromMilliseconds(1));
            Assert.That(masks, Is.EqualTo(new[] { InotifyMask.Create }));
        }
        finally
        {
            Directory.Delete(t, recursive: true);
        }
    }
}
