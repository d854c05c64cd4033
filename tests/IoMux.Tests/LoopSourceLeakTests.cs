using IoMux.Interop;
using IoMux.Loop;
using NUnit.Framework;

namespace IoMux.Tests;

/// <summary>A source whose descriptor the poller refuses must not leave that descriptor open: the caller got an
/// exception, not a source, so nothing else would ever close it. select refuses descriptors at or above FD_SETSIZE
/// (1024), which is how the refusal is produced here.</summary>
public sealed unsafe class LoopSourceLeakTests
{
    [Test]
    public void AnInotifySourceThePollerRefusesClosesItsDescriptor()
    {
        var select = Models.ModelTargets.WithNative.Single(t => t.Name == "select");
        using var loop = LoopTests.NewLoop(select);
        var fillers = new List<FileStream>();
        try
        {
            // Push the lowest free descriptor past 1023 so that inotify_init1's is one select cannot hold.
            while (fillers.Count < 1100 && Directory.GetFiles("/proc/self/fd").Length < 1060)
                fillers.Add(new FileStream("/dev/null", FileMode.Open, FileAccess.Read));
            int before = Directory.GetFiles("/proc/self/fd").Length;
            Assert.Catch<Exception>(() => loop.AddInotify(Path.GetTempPath(), InotifyMask.Create, (_, _) => { }));
            Assert.That(Directory.GetFiles("/proc/self/fd").Length, Is.LessThanOrEqualTo(before), "the inotify descriptor was left open");
        }
        finally
        {
            foreach (var f in fillers)
                f.Dispose();
        }
    }

    /// <summary>Opens /dev/null until the lowest free descriptor is past 1023 (one select cannot hold); returns the
    /// fillers for the caller to dispose.</summary>
    private static List<FileStream> FillBelowFdSetSize()
    {
        var fillers = new List<FileStream>();
        while (fillers.Count < 1100 && Directory.GetFiles("/proc/self/fd").Length < 1060)
            fillers.Add(new FileStream("/dev/null", FileMode.Open, FileAccess.Read));
        return fillers;
    }

    /// <summary>pidfds open in this process: counted by what they are, not by the number of descriptors, which the
    /// runtime's own (a thread start's pipe, the signal handling's) move.</summary>
    private static int Pidfds() =>
        Directory.GetFiles("/proc/self/fd").Count(fd => new FileInfo(fd).LinkTarget == "anon_inode:[pidfd]");

    /// <summary>A child source whose pidfd the poller refuses (select, past FD_SETSIZE) closed nothing and threw: the
    /// pidfd leaked with every attempt. Now the pidfd is closed and the child watched through SIGCHLD, which any
    /// backend can do: its exit is still reported.</summary>
    [Test]
    public void AChildSourceWhosePidfdThePollerRefusesClosesItAndStillReportsTheExit()
    {
        var select = Models.ModelTargets.WithNative.Single(t => t.Name == "select");
        using var loop = LoopTests.NewLoop(select);
        int pid = LoopChildTests.Spawn("exit 7");
        var fillers = FillBelowFdSetSize();
        try
        {
            int before = Pidfds();
            ChildStatus? status = null;
            var child = loop.AddChild(pid, (_, s) => status = s);
            Assert.That(child.Registration, Is.Null, "the pidfd was registered past FD_SETSIZE on select");
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (status is null && DateTime.UtcNow < deadline)
                loop.RunOnce(TimeSpan.FromMilliseconds(50));
            Assert.That(status, Is.Not.Null, "the exit was not reported");
            Assert.That((status!.Value.Code, status.Value.Status), Is.EqualTo((ChildStatusCode.Exited, 7)));
            Assert.That(Pidfds(), Is.EqualTo(before), "the pidfd was left open");
        }
        finally
        {
            foreach (var f in fillers)
                f.Dispose();
            LoopChildTests.KillAndReap(pid);
        }
    }

    /// <summary>sd_event_source_set_io_fd registers the new descriptor before it lets the old one go, and on a refusal
    /// restores the old one. IoSource.SetDescriptor moved to the new descriptor first: refused, the source stayed on it
    /// unregistered, so an owning source closed the caller's descriptor when disposed (the caller, told of the failure,
    /// still owns it) and never closed its own.</summary>
    [Test]
    public void ASetDescriptorThePollerRefusesLeavesTheSourceOnItsOldDescriptor()
    {
        var select = Models.ModelTargets.WithNative.Single(t => t.Name == "select");
        using var loop = LoopTests.NewLoop(select);
        LibC.CreateNonBlockingPipe(out int ar, out int aw);
        LibC.CreateNonBlockingPipe(out int br, out int bw);
        int high = LibC.dup2(br, 1500); // past FD_SETSIZE: select refuses it
        LibC.close(br);
        bool aOwned = true;
        try
        {
            Assume.That(high, Is.EqualTo(1500));
            int ready = 0;
            var source = loop.AddIo(ar, Interest.Readable, (s, _) =>
            {
                byte x;
                LibC.read(s.Descriptor, &x, 1);
                ready++;
            });
            source.OwnsDescriptor = true;
            aOwned = false;
            Assert.Catch<Exception>(() => source.SetDescriptor(high));
            Assert.That(source.Descriptor, Is.EqualTo(ar), "the source moved to the descriptor it could not watch");
            byte one = 1;
            Assert.That((int)LibC.write(aw, &one, 1), Is.EqualTo(1));
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
            while (ready == 0 && DateTime.UtcNow < deadline)
                loop.RunOnce(TimeSpan.FromMilliseconds(50));
            Assert.That(ready, Is.EqualTo(1), "the old descriptor is no longer watched");
            source.Dispose();
            Assert.That(LoopPortingDecisionsTests.ReaderGone(aw), Is.True, "the owning source did not close its own descriptor");
            Assert.That(LoopPortingDecisionsTests.ReaderGone(bw), Is.False, "the owning source closed the caller's descriptor");
        }
        finally
        {
            if (aOwned)
                LibC.close(ar);
            foreach (int fd in new[] { aw, high, bw })
                LibC.close(fd);
        }
    }
}
