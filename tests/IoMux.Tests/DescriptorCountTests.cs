using IoMux.Interop;

namespace IoMux.Tests;

/// <summary>
/// The descriptor budget counts what a server holds near its limit. Listing /proc/self/fd takes a descriptor and so
/// fails at the limit; the probe (poll(2) over every number, POLLNVAL for those not open) needs none. Both must agree.
/// </summary>
public sealed partial class DescriptorCountTests
{
    /// <summary>Other tests open and close descriptors on other threads: the two counts are compared a few times and
    /// must agree exactly at least once (the listing counts its own directory descriptor, hence the one; every entry is
    /// counted: Directory.GetFiles leaves out those that resolve to a directory, the listing's own one included).</summary>
    [Test]
    public void TheProbeCountsWhatProcSelfFdLists()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("/proc/self/fd is the reference here; this test runs on Linux");
        var seen = new List<string>();
        for (int attempt = 0; attempt < 20; attempt++)
        {
            int listed = Directory.GetFileSystemEntries("/proc/self/fd").Length - 1;
            int probed = DescriptorBudget.ProbeOpen(DescriptorBudget.SoftLimit());
            if (listed == probed)
                return;
            seen.Add($"listed {listed}, probed {probed}");
        }
        Assert.Fail("the probe never agreed with /proc/self/fd: " + string.Join("; ", seen));
    }

    [Test]
    public void TheProbeSeesDescriptorsOpenAndClosed()
    {
        long limit = DescriptorBudget.SoftLimit();
        var fds = new List<int>();
        try
        {
            var deltas = new List<string>();
            for (int attempt = 0; attempt < 20; attempt++)
            {
                int before = DescriptorBudget.ProbeOpen(limit);
                for (int i = 0; i < 10; i++)
                {
                    LibC.CreateNonBlockingPipe(out int r, out int w);
                    fds.Add(r);
                    fds.Add(w);
                }
                int during = DescriptorBudget.ProbeOpen(limit);
                foreach (int fd in fds)
                    LibC.close(fd);
                fds.Clear();
                int after = DescriptorBudget.ProbeOpen(limit);
                if (during - before == 20 && during - after == 20)
                    return;
                deltas.Add($"{before} -> {during} -> {after}");
            }
            Assert.Fail("twenty descriptors opened and closed never showed as 20 in the probe: " + string.Join("; ", deltas));
        }
        finally
        {
            foreach (int fd in fds)
                LibC.close(fd);
        }
    }

    /// <summary>An open directory is a descriptor like any other (iomux serve holds its root open): the budget's count must
    /// include it. Listing with Directory.GetFiles did not (it leaves out entries that resolve to a directory). Compared a
    /// few times, as other tests open and close descriptors meanwhile.</summary>
    [Test]
    public void TheCountIncludesAnOpenDirectory()
    {
        var deltas = new List<string>();
        for (int attempt = 0; attempt < 20; attempt++)
        {
            int before = DescriptorBudget.CountOpen();
            int fd = open("/", 0); // O_RDONLY: a directory opens read-only on every system
            Assert.That(fd, Is.GreaterThanOrEqualTo(0), "open(\"/\")");
            int during;
            try
            {
                during = DescriptorBudget.CountOpen();
            }
            finally
            {
                LibC.close(fd);
            }
            if (during - before == 1)
                return;
            deltas.Add($"{before} -> {during}");
        }
        Assert.Fail("an open directory never showed in the count: " + string.Join("; ", deltas));
    }

    [System.Runtime.InteropServices.LibraryImport("libc", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [Test]
    public void TheProbeStopsAtTheLimitItIsGiven()
    {
        // 0, 1 and 2 are open in a test host; a limit of 3 probes only them, one of 0 probes nothing.
        Assert.That(DescriptorBudget.ProbeOpen(3), Is.LessThanOrEqualTo(3));
        Assert.That(DescriptorBudget.ProbeOpen(0), Is.EqualTo(0));
        Assert.That(DescriptorBudget.ProbeOpen(-1), Is.EqualTo(0));
    }
}
