using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Loop;

namespace IoMux.Tests;

// The sd-event features a porter reaches for first (issue 22 item 3), restated from test-event.c where it has a case
// for them, and from the man pages where it has none: exit on idle, prepare and destroy callbacks, the rate limit's
// expire callback, the SIGINT/SIGTERM exit helper, inotify.
public sealed unsafe partial class SdEventRestatedTests
{
    private const int SIGINT = 2, SIGTERM = 15;

    // ---- TEST(exit_on_idle) ----

    /// <summary>TEST(exit_on_idle): with exit-on-idle on, a recurring defer keeps the loop going; once another source
    /// switches it off, nothing but a post and an exit source is left, and the loop exits with 0 after running the exit
    /// source (sd_event_set_exit_on_idle(3): "no more enabled, non-exit, non-post event sources").</summary>
    [Test]
    public void ExitOnIdle_TheLoopExitsWithZeroOnceOnlyPostAndExitSourcesAreLeft()
    {
        using var loop = LoopTests.NewLoop(backend);
        loop.ExitOnIdle = true;
        Assert.That(loop.ExitOnIdle, Is.True);
        int recurring = 0, posts = 0, exits = 0;
        var defer = loop.AddDefer(_ => recurring++, state: SourceState.On);
        loop.AddPost(_ => posts++);
        loop.AddExit(_ => exits++);
        loop.AddDefer(d => // switches the recurring defer off after five runs, then goes itself
        {
            if (recurring < 5)
                return;
            defer.State = SourceState.Off;
            d.Dispose();
        }, state: SourceState.On);
        // Iterations bounded in time rather than Run(): a guard timer would itself keep the loop from being idle.
        var clock = Stopwatch.StartNew();
        bool running = true;
        while (running && clock.Elapsed < Deadline)
            running = loop.RunOnce(TimeSpan.FromMilliseconds(200));
        Assert.That(running, Is.False, "the loop never exited on idle");
        Assert.That(loop.Run(), Is.Zero, "the exit code (Run on an exited loop only returns it)");
        Assert.That(recurring, Is.EqualTo(5));
        Assert.That(exits, Is.EqualTo(1));
        Assert.That(posts, Is.Positive);
    }

    // ---- TEST(exit_on_idle_no_sources) ----

    /// <summary>TEST(exit_on_idle_no_sources): a loop with no sources at all and exit-on-idle on returns at once, with 0.</summary>
    [Test]
    public void ExitOnIdleNoSources_ALoopWithNothingToDoExitsAtOnce()
    {
        using var loop = LoopTests.NewLoop(backend);
        loop.ExitOnIdle = true;
        var clock = Stopwatch.StartNew();
        Assert.That(loop.RunOnce(TimeSpan.FromSeconds(5)), Is.False, "the loop exited");
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2)), "without waiting");
        Assert.That(loop.Run(), Is.Zero);
    }

    /// <summary>What counts as busy: an armed timer and a watched descriptor do, one switched off does not; so does a
    /// posted action. Without exit-on-idle nothing changes (the loop just sleeps).</summary>
    [Test]
    public void ExitOnIdle_ArmedTimersAndSourcesThatAreOnKeepTheLoopGoing()
    {
        using var loop = LoopTests.NewLoop(backend);
        var (r, _) = Pipe();
        var off = loop.AddIo(r, Interest.Readable, (_, _) => { }, state: SourceState.Off);
        loop.RunOnce(TimeSpan.FromMilliseconds(10));
        Assert.That(loop.RunOnce(TimeSpan.FromMilliseconds(10)), Is.True, "exit-on-idle is off by default");
        loop.ExitOnIdle = true;
        bool fired = false;
        loop.AddSlimTimer(TimeSpan.FromMilliseconds(50), _ => fired = true);
        Assert.That(loop.RunOnce(TimeSpan.FromMilliseconds(10)), Is.True, "an armed timer keeps it going");
        Assert.That(RunUntil(loop, () => fired), Is.True);
        loop.Post(() => { });
        Assert.That(loop.RunOnce(TimeSpan.Zero), Is.True, "a posted action keeps it going");
        Assert.That(off.State, Is.EqualTo(SourceState.Off));
        Assert.That(loop.RunOnce(TimeSpan.FromSeconds(5)), Is.False, "only a switched-off source left: idle");
    }

    // ---- TEST(basic): the prepare handlers ----

    /// <summary>TEST(basic) sets prepare handlers on its sources (sd_event_source_set_prepare(3)): each runs before the
    /// loop polls, in priority order, for the sources that are on; a prepare handler may switch its own source off,
    /// and then the source is not dispatched though its descriptor is ready.</summary>
    [Test]
    public void Basic_PrepareCallbacksRunBeforeTheWaitInPriorityOrderForSourcesThatAreOn()
    {
        using var loop = LoopTests.NewLoop(backend);
        var (r, w) = Pipe();
        WriteByte(w);
        var order = new List<string>();
        var dispatched = new List<string>();
        var x = loop.AddIo(r, Interest.Readable, (_, _) => dispatched.Add("x"), priority: 1);
        var y = loop.AddDefer(_ => dispatched.Add("y"), priority: 0, state: SourceState.Oneshot);
        var z = loop.AddDefer(_ => dispatched.Add("z"), state: SourceState.Off);
        var lowest = loop.AddDefer(_ => dispatched.Add("lowest"), priority: -5, state: SourceState.Oneshot);
        x.PrepareCallback = s => { order.Add("x"); s.State = SourceState.Off; };
        y.PrepareCallback = _ => order.Add("y");
        z.PrepareCallback = _ => order.Add("z");
        lowest.PrepareCallback = _ => order.Add("lowest");
        loop.RunOnce(TimeSpan.Zero);
        Assert.That(order, Is.EqualTo(new[] { "lowest", "y", "x" }), "priority order, switched-off sources left out");
        Assert.That(dispatched, Is.EqualTo(new[] { "lowest", "y" }), "x switched itself off in its prepare: not dispatched");
        order.Clear();
        x.State = SourceState.On;
        x.PrepareCallback = null;
        loop.RunOnce(TimeSpan.Zero);
        Assert.That(order, Is.Empty, "oneshots ran and are off; x's prepare was removed");
        Assert.That(dispatched, Has.Count.EqualTo(3).And.Contains("x"));
    }

    /// <summary>A prepare callback that throws stops the loop as a callback that throws does: the loop's exception
    /// names the source.</summary>
    [Test]
    public void Basic_APrepareCallbackThatThrowsStopsTheLoopNamingItsSource()
    {
        using var loop = LoopTests.NewLoop(backend);
        var d = loop.AddDefer(_ => { }, description: "prepared");
        d.PrepareCallback = _ => throw new InvalidDataException("boom");
        var e = Assert.Throws<EventLoopException>(() => loop.RunOnce(TimeSpan.Zero))!;
        Assert.That(e.InnerException, Is.TypeOf<InvalidDataException>());
        Assert.That(e.FailedSource, Is.SameAs(d));
    }

    // ---- destroy callbacks ----

    /// <summary>sd_event_source_set_destroy_callback(3): the callback runs once when the source goes, whether it is
    /// disposed from its own callback, disposes itself (a child source after reporting does) or goes with the loop;
    /// never while the source lives.</summary>
    [Test]
    public void DestroyCallback_RunsOnceWhenTheSourceGoesWhicheverWayItGoes()
    {
        var destroyed = new List<string>();
        var loop = LoopTests.NewLoop(backend);
        try
        {
            var self = loop.AddDefer(s => s.Dispose(), description: "self");
            var timer = loop.AddTimer(TimeSpan.FromHours(1), _ => { }, description: "timer");
            var exit = loop.AddExit(_ => { }, description: "exit");
            foreach (var source in new EventSource[] { self, timer, exit })
                source.DestroyCallback = s => destroyed.Add(s.Description);
            loop.RunOnce(TimeSpan.Zero);
            Assert.That(destroyed, Is.EqualTo(new[] { "self" }));
            self.Dispose();
            Assert.That(destroyed, Is.EqualTo(new[] { "self" }), "once");
        }
        finally
        {
            loop.Dispose();
        }
        Assert.That(destroyed, Is.EquivalentTo(new[] { "self", "timer", "exit" }), "the loop's disposal destroys what is left");
    }

    // ---- TEST(ratelimit): the expire callback ----

    /// <summary>TEST(ratelimit)'s expire callback (sd_event_source_set_ratelimit_expire_callback(3)): a timer re-arming
    /// itself is limited after its burst; the expire callback has not run then, runs once when the interval is over,
    /// and the source is dispatched again after it.</summary>
    [Test]
    public void Ratelimit_TheExpireCallbackRunsOnceWhenTheLimitLiftsThenTheSourceRunsAgain()
    {
        using var loop = LoopTests.NewLoop(backend);
        int count = 0, expired = 0, countAtExpiry = -1;
        var s = loop.AddTimer(TimeSpan.FromTicks(10), t =>
        {
            t.State = SourceState.On;
            t.SetDeadline(t.Deadline + TimeSpan.FromMicroseconds(1));
            count++;
        }, accuracy: TimeSpan.FromTicks(10));
        s.SetRateLimit(TimeSpan.FromMilliseconds(300), burst: 10);
        s.RateLimitExpireCallback = src =>
        {
            expired++;
            countAtExpiry = count;
            Assert.That(src.IsRateLimited, Is.False, "lifted before the callback");
        };
        Assert.That(RunUntil(loop, () => s.IsRateLimited), Is.True);
        Assert.That((count, expired), Is.EqualTo((10, 0)));
        Assert.That(RunUntil(loop, () => expired > 0), Is.True, "the expire callback never ran");
        Assert.That(RunUntil(loop, () => count > 10), Is.True, "dispatched again after the limit lifted");
        Assert.That((expired, countAtExpiry), Is.EqualTo((1, 10)));
    }

    // ---- sd_event_set_signal_exit ----

    /// <summary>sd_event_set_signal_exit(3): with it on, SIGINT or SIGTERM ends the loop with 0 (and the process lives
    /// on: the signal is handled). Off again, the loop's two signal sources are gone.</summary>
    [TestCase(SIGTERM)]
    [TestCase(SIGINT)]
    public void SignalExit_SigintOrSigtermEndsTheLoopWithZero(int signal)
    {
        using var loop = LoopTests.NewLoop(backend);
        loop.SignalExit = true;
        Assert.That(loop.SignalExit, Is.True);
        int exits = 0;
        loop.AddExit(_ => exits++);
        loop.AddSlimTimer(TimeSpan.FromMilliseconds(50), _ => TestProcesses.Signal(Environment.ProcessId, signal));
        Assert.That(RunGuarded(loop), Is.Zero, "the signal ended the loop (99: the guard did)");
        Assert.That(exits, Is.EqualTo(1));
        loop.SignalExit = false;
        Assert.That(loop.SignalExit, Is.False);
    }

    // ---- TEST(inotify) ----

    private sealed class InotifyContext
    {
        public int Creates0, Creates1, Creates2, Deletes1, Deletes2, DeleteSelf, Ignored;
        public readonly List<string> Names = [];
    }

    /// <summary>TEST(inotify) with 100 files: three sources watch one directory (a for creation only, with
    /// IN_ONLYDIR; b and c for creation and deletion, c at a lower priority and with IN_EXCL_UNLINK), a fourth watches
    /// a file "sub" inside it for its own deletion. 100 files are created, then "sub" is removed: each directory source
    /// sees the 101 creations ("sub" was made after they were added), b and c see "sub" deleted, and the fourth sees
    /// IN_DELETE_SELF then IN_IGNORED.</summary>
    [Test]
    public void Inotify_EverySourceOnADirectorySeesEveryCreationAndTheDeletion()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("inotify is Linux's");
        using var loop = LoopTests.NewLoop(backend);
        string dir = Directory.CreateTempSubdirectory("test-inotify-").FullName;
        try
        {
            var context = new InotifyContext();
            var a = loop.AddInotify(dir, InotifyMask.Create | InotifyMask.OnlyDirectory, (_, e) =>
            {
                Assert.That(e.Mask & InotifyMask.Create, Is.EqualTo(InotifyMask.Create));
                context.Creates0++;
            }, description: "0");
            var b = loop.AddInotify(dir, InotifyMask.Create | InotifyMask.Delete | InotifyMask.DontFollow, (_, e) =>
            {
                if ((e.Mask & InotifyMask.Create) != 0)
                    context.Creates1++;
                if ((e.Mask & InotifyMask.Delete) != 0 && e.Name == "sub")
                    context.Deletes1++;
            }, description: "1");
            var c = loop.AddInotify(dir, InotifyMask.Create | InotifyMask.Delete | InotifyMask.ExcludeUnlinked, (_, e) =>
            {
                if ((e.Mask & InotifyMask.Create) != 0)
                {
                    context.Creates2++;
                    context.Names.Add(e.Name!);
                }
                if ((e.Mask & InotifyMask.Delete) != 0 && e.Name == "sub")
                    context.Deletes2++;
            }, priority: 100, description: "2");
            string sub = Path.Combine(dir, "sub");
            File.WriteAllBytes(sub, []);
            loop.AddInotify(sub, InotifyMask.DeleteSelf, (_, e) =>
            {
                if ((e.Mask & InotifyMask.DeleteSelf) != 0)
                    context.DeleteSelf++;
                else if ((e.Mask & InotifyMask.Ignored) != 0)
                    context.Ignored++;
            });
            for (int i = 0; i < 100; i++)
                File.WriteAllBytes(Path.Combine(dir, i.ToString(System.Globalization.CultureInfo.InvariantCulture)), []);
            File.Delete(sub);
            Assert.That(RunUntil(loop, () => context.Creates0 == 101 && context.Creates1 == 101 && context.Creates2 == 101
                && context.Deletes1 == 1 && context.Deletes2 == 1 && context.Ignored == 1), Is.True,
                $"creates {context.Creates0}/{context.Creates1}/{context.Creates2}, deletes {context.Deletes1}/{context.Deletes2}, ignored {context.Ignored}");
            Assert.That(context.DeleteSelf, Is.EqualTo(1));
            Assert.That(context.Names[0], Is.EqualTo("sub"));
            Assert.That(context.Names, Does.Contain("99"));
            RunIdle(loop);
            Assert.That(context.Creates0, Is.EqualTo(101), "nothing more");
            Assert.That(a.Path, Is.EqualTo(dir));
            Assert.That(new[] { a.Mask, b.Mask, c.Mask }, Has.All.Matches<InotifyMask>(m => (m & InotifyMask.Create) != 0));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    // ---- TEST(inotify_self_destroy) ----

    /// <summary>TEST(inotify_self_destroy): a source that disposes itself from its callback gets no more callbacks,
    /// even for events already read with the one that disposed it, and its destroy callback runs.</summary>
    [Test]
    public void InotifySelfDestroy_ASourceDisposedFromItsCallbackGetsNothingMore()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("inotify is Linux's");
        using var loop = LoopTests.NewLoop(backend);
        string dir = Directory.CreateTempSubdirectory("test-inotify-self-destroy-").FullName;
        try
        {
            int calls = 0;
            bool destroyed = false;
            var s = loop.AddInotify(dir, InotifyMask.Create, (src, _) =>
            {
                calls++;
                src.Dispose();
            });
            s.DestroyCallback = _ => destroyed = true;
            for (int i = 0; i < 5; i++)
                File.WriteAllBytes(Path.Combine(dir, $"f{i}"), []);
            Assert.That(RunUntil(loop, () => calls > 0), Is.True);
            RunIdle(loop);
            Assert.That(calls, Is.EqualTo(1));
            Assert.That(destroyed, Is.True);
            Assert.That(s.IsDisposed, Is.True);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>sd_event_add_inotify(3) fails for a path that does not exist (ENOENT), and with IN_ONLYDIR for one
    /// that is not a directory (ENOTDIR); no descriptor is left behind.</summary>
    [Test]
    public void Inotify_APathTheKernelRefusesIsAnErrorNamingIt()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("inotify is Linux's");
        using var loop = LoopTests.NewLoop(backend);
        var missing = Assert.Throws<PosixException>(() => loop.AddInotify("/nonexistent/iomux", InotifyMask.Create, (_, _) => { }))!;
        Assert.That(missing.Errno, Is.EqualTo(2)); // ENOENT
        var file = Path.GetTempFileName();
        try
        {
            var notDir = Assert.Throws<PosixException>(() => loop.AddInotify(file, InotifyMask.Create | InotifyMask.OnlyDirectory, (_, _) => { }))!;
            Assert.That(notDir.Errno, Is.EqualTo(20)); // ENOTDIR
        }
        finally
        {
            File.Delete(file);
        }
    }
}
