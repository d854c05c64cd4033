using IoMux.Interop;

namespace IoMux.Tests;

/// <summary>
/// The descriptor budget counts what a server holds near its limit. Listing /proc/self/fd takes a descriptor and so
/// fails at the limit; the probe (poll(2) over every number, POLLNVAL for those not open) needs none. Both must agree.
/// </summary>
public sealed class DescriptorCountTests
{
    /// <summary>Other tests open and close descriptors on other threads: the two counts are compared a few times and
    /// must agree exactly at least once (the listing counts its own directory descriptor, hence the one).</summary>
    [Test]
    public void TheProbeCountsWhatProcSelfFdLists()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("/proc/self/fd is the reference here; this test runs on Linux");
        var seen = new List<string>();
        for (int attempt = 0; attempt < 20; attempt++)
        {
            int listed = Directory.GetFiles("/proc/self/fd").Length - 1;
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

    [Test]
    public void TheProbeStopsAtTheLimitItIsGiven()
    {
        // 0, 1 and 2 are open in a test host; a limit of 3 probes only them, one of 0 probes nothing.
        Assert.That(DescriptorBudget.ProbeOpen(3), Is.LessThanOrEqualTo(3));
        Assert.That(DescriptorBudget.ProbeOpen(0), Is.EqualTo(0));
        Assert.That(DescriptorBudget.ProbeOpen(-1), Is.EqualTo(0));
    }
}
