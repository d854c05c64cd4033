using IoMux.Loop;
using NUnit.Framework;

namespace IoMux.Tests;

/// <summary>The wait status words of each system, decoded as its own sys/wait.h macros decode them. Only Linux runs
/// here, so the other systems' words are given with their WIFCONTINUED word and SIGCONT number.</summary>
public sealed class ChildWaitStatusTests
{
    private const int Linux = 0xFFFF, MacOS = 0x137F, FreeBsd = 0x13;

    /// <summary>FreeBSD's WIFCONTINUED is the bare word 0x13 (sys/sys/wait.h); its low seven bits are neither 0 (an
    /// exit) nor 0x7f (a stop), so a decoder without it reported a resumed child as killed by signal 19: the source
    /// took the child for ended, disposed itself, and the child's real exit was never waited for (a zombie).</summary>
    [Test]
    public void FreeBsdsResumptionIsAResumptionNotADeathBySignal19()
    {
        var status = ChildStatus.FromWaitStatus(0x13, FreeBsd, sigcont: 19);
        Assert.That(status, Is.Not.Null);
        Assert.That((status!.Value.Code, status.Value.Status, status.Value.HasEnded), Is.EqualTo((ChildStatusCode.Continued, 19, false)));
        // The rest of FreeBSD's words: a stop by SIGSTOP (17), an exit 3, a death by SIGKILL.
        Assert.That(ChildStatus.FromWaitStatus(17 << 8 | 0x7F, FreeBsd, 19)!.Value.Code, Is.EqualTo(ChildStatusCode.Stopped));
        Assert.That(ChildStatus.FromWaitStatus(3 << 8, FreeBsd, 19)!.Value.Status, Is.EqualTo(3));
        Assert.That(ChildStatus.FromWaitStatus(9, FreeBsd, 19)!.Value.Code, Is.EqualTo(ChildStatusCode.Killed));
    }

    /// <summary>0x137f is macOS's resumption but Linux's stop by signal 19 (SIGSTOP there); 0xffff is Linux's
    /// resumption (SIGCONT 18); 0x8b is a death by SIGSEGV with a core on both.</summary>
    [Test]
    public void TheSameWordMeansWhatEachSystemSays()
    {
        Assert.That(ChildStatus.FromWaitStatus(0x137F, MacOS, 19)!.Value.Code, Is.EqualTo(ChildStatusCode.Continued));
        var linuxStop = ChildStatus.FromWaitStatus(0x137F, Linux, 18)!.Value;
        Assert.That((linuxStop.Code, linuxStop.Status), Is.EqualTo((ChildStatusCode.Stopped, 19)));
        var linuxContinued = ChildStatus.FromWaitStatus(0xFFFF, Linux, 18)!.Value;
        Assert.That((linuxContinued.Code, linuxContinued.Status), Is.EqualTo((ChildStatusCode.Continued, 18)));
        var dumped = ChildStatus.FromWaitStatus(0x8B, Linux, 18)!.Value;
        Assert.That((dumped.Code, dumped.Status), Is.EqualTo((ChildStatusCode.Dumped, 11)));
        // And this machine's own choice is Linux's.
        if (OperatingSystem.IsLinux())
            Assert.That(ChildStatus.FromWaitStatus(0x137F)!.Value.Code, Is.EqualTo(ChildStatusCode.Stopped));
    }

    /// <summary>The per-system facts, pinned to literals typed from each header: NetBSD's WCONTINUED is 0x10 (NetBSD
    /// sys/sys/wait.h 1.38; 8 there is WALLSIG, which the old default asked for instead), illumos's SIGCONT is 25
    /// (sys/iso/signal_iso.h; the old code said 19 for every non-Linux system).</summary>
    [Test]
    public void EachSystemsWaitFactsAreItsHeaders()
    {
        Assert.That(WaitFacts.For("netbsd"), Is.EqualTo(new WaitFacts(0xFFFF, 19, 0x10)));
        Assert.That(WaitFacts.For("illumos").Sigcont, Is.EqualTo(25));
        Assert.That(WaitFacts.For("freebsd"), Is.EqualTo(new WaitFacts(0x13, 19, 4)));
        Assert.That(WaitFacts.For("macos"), Is.EqualTo(new WaitFacts(0x137F, 19, 0x10)));
        Assert.That(WaitFacts.For("linux"), Is.EqualTo(new WaitFacts(0xFFFF, 18, 8)));
        Assert.That(WaitFacts.Here, Is.EqualTo(WaitFacts.For("linux")), "this machine is Linux");
    }
}
