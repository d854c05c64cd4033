extern alias core;
using System.Runtime.InteropServices;
using IoMux.Backends.Kqueue;
using IoMux.Interop;
// IoMux's own copy of the interop, for its methods and the backends' that take its types (this assembly compiles
// one of its own: tests/LinkedInterop.props).
using CoreInterop = core::IoMux.Interop;

namespace IoMux.Tests;

/// <summary>
/// The per-OS values IoMux passes to libc outside the backends' filter tables (<see cref="OsAbi"/>), each pinned to a
/// literal typed from the OS's own header: the file, revision and line are on each case. These run on any machine,
/// since every value is a function of the OS rather than read from the one the tests run on; the Linux column is
/// also compared with gcc in <see cref="LayoutTests"/>. Each case here failed on the values main had before issue 20.
/// </summary>
public sealed class PerOsAbiTests
{
    // The flavor is internal: cases name it and the test parses it.
    private static UnixFlavor Os(string name) => Enum.Parse<UnixFlavor>(name);

    // illumos-gate usr/src/uts/common/sys/filio.h @7082e811fdedd165abf44baf5541a279e4645026 line 60:
    //   #define FIONREAD _IOR('f', 127, int); sys/ioccom.h @0ceaf38333191201001ea6ff4813aef604f0c792: _IOR(x, y, t) =
    //   IOC_OUT (0x40000000) | (sizeof (t) & 0xff) << 16 | x << 8 | y = 0x4004667F.
    //   Second reading: rust-lang/libc src/unix/solarish/mod.rs @2eda1e52 line 843 (FIONREAD: c_int = 0x4004667f).
    //   Solaris shares the solarish value (no Solaris header is public; rust-lang/libc keeps it in the common module).
    [TestCase("Illumos", 0x4004667FUL)]
    [TestCase("Solaris", 0x4004667FUL)]
    // Linux include/uapi/asm-generic/ioctls.h: FIONREAD 0x541B.
    [TestCase("Linux", 0x541BUL)]
    // The BSDs and macOS: sys/filio.h _IOR('f', 127, int).
    [TestCase("FreeBSD", 0x4004667FUL)]
    [TestCase("OpenBSD", 0x4004667FUL)]
    public void FionReadIsTheHeadersValue(string os, ulong expected) =>
        Assert.That((ulong)OsAbi.FionRead(Os(os)), Is.EqualTo(expected));

    // openbsd/src sys/sys/resource.h rev 1.9 @08f631a7702634aa8c22d09be9bcf1e72ea5c3fe line 90: RLIMIT_NOFILE 8
    //   (line 87: RLIMIT_RSS 5, the value main used).
    [TestCase("OpenBSD", 8)]
    // NetBSD/src sys/sys/resource.h rev 1.31.6.1 @021a0f49576c88ebdfbe536a3fb01445fb6ab96a line 89: RLIMIT_NOFILE 8.
    [TestCase("NetBSD", 8)]
    // DragonFlyBSD/DragonFlyBSD sys/sys/resource.h @04a0f5efb8226a1f61dde490848480ace9c522d1 line 95: RLIMIT_NOFILE 8.
    //   Second reading: rust-lang/libc @2eda1e52 netbsdlike/mod.rs line 425 and freebsdlike/mod.rs line 766 (8).
    [TestCase("DragonFly", 8)]
    // illumos-gate usr/src/uts/common/sys/resource.h: RLIMIT_NOFILE 5 (rust-lang/libc solarish/mod.rs line 1330).
    [TestCase("Illumos", 5)]
    [TestCase("Linux", 7)]
    public void RlimitNofileIsTheHeadersValue(string os, int expected) =>
        Assert.That(OsAbi.RlimitNofile(Os(os)), Is.EqualTo(expected));

    // openbsd/src sys/sys/socket.h rev 1.88 @028dbc3c784e6977b34470dc3019099934cf48d7 line 171: AF_INET6 24.
    [TestCase("OpenBSD", 24)]
    // NetBSD/src sys/sys/socket.h @00285d2d6f9ba6ca6d1c1fac120a381daca0d032 (the address family list): AF_INET6 24.
    //   Second reading: rust-lang/libc @2eda1e52 src/unix/bsd/netbsdlike/mod.rs line 498 (24).
    [TestCase("NetBSD", 24)]
    // FreeBSD and DragonFly 28 (rust-lang/libc freebsdlike/mod.rs line 838); macOS 30 (apple/mod.rs line 2709);
    // illumos-gate sys/socket.h @0250c53a: AF_INET6 26.
    [TestCase("DragonFly", 28)]
    [TestCase("FreeBSD", 28)]
    [TestCase("MacOS", 30)]
    [TestCase("Illumos", 26)]
    public void AfInet6IsTheHeadersValue(string os, int expected) =>
        Assert.That(OsAbi.AfInet6(Os(os)), Is.EqualTo(expected));

    // sun_path: illumos-gate usr/src/uts/common/sys/un.h "char sun_path[108]" after a 16-bit sun_family; Linux
    //   include/uapi/linux/un.h UNIX_PATH_MAX 108; freebsd-src sys/sys/un.h and xnu bsd/sys/un.h "char sun_path[104]"
    //   after sun_len and sun_family (compiled: /work/notes/abi/sockaddr.c, sizeof 110 and 106, sun_path at 2).
    //   Before issue 20 the proxy allowed 103 bytes on every OS but Linux, illumos's 104 to 107 included.
    [TestCase("Illumos", 108)]
    [TestCase("Solaris", 108)]
    [TestCase("Linux", 108)]
    [TestCase("FreeBSD", 104)]
    [TestCase("MacOS", 104)]
    [TestCase("NetBSD", 104)]
    [TestCase("OpenBSD", 104)]
    [TestCase("DragonFly", 104)]
    public void SunPathIsTheHeadersLength(string os, int expected) =>
        Assert.That(OsAbi.SunPathLength(Os(os)), Is.EqualTo(expected));

    // illumos-gate usr/src/uts/common/sys/socket.h @0250c53ad267726f2438e3c6556199a0bbf588a2 line 141:
    //   #define SO_DGRAM_ERRIND 0x0200; the file defines no SO_REUSEPORT at all (nor does rust-lang/libc's solarish,
    //   illumos or solaris module @2eda1e52). Main set 0x200, which there asks for delayed datagram errors.
    [TestCase("Illumos")]
    [TestCase("Solaris")]
    public void IllumosHasNoReusePort(string os) => Assert.That(OsAbi.SoReusePort(Os(os)), Is.Null);

    // openbsd/src sys/sys/socket.h rev 1.88 line 98: SO_REUSEPORT 0x0200 (the 4.4BSD value, macOS and NetBSD alike).
    [TestCase("OpenBSD", 0x200)]
    [TestCase("Linux", 15)]
    public void ReusePortIsTheHeadersValue(string os, int expected) => Assert.That(OsAbi.SoReusePort(Os(os)), Is.EqualTo(expected));

    [Test(Description = "A listener group of more than one member on illumos is refused with the cause named; one member needs no SO_REUSEPORT.")]
    public void ListenerGroupsAreRefusedWithoutReusePort()
    {
        string? reason = IoMux.Web.ListenerGroup.RefusalReason(2, OsAbi.SoReusePort(UnixFlavor.Illumos) is not null, nameof(UnixFlavor.Illumos));
        Assert.That(reason, Does.Contain("SO_REUSEPORT").And.Contain("Illumos"));
        Assert.That(IoMux.Web.ListenerGroup.RefusalReason(1, false, nameof(UnixFlavor.Illumos)), Is.Null, "a group of one");
        Assert.That(IoMux.Web.ListenerGroup.RefusalReason(4, OsAbi.SoReusePort(UnixFlavor.Linux) is not null, nameof(UnixFlavor.Linux)), Is.Null);
    }

    // illumos-gate usr/src/uts/common/sys/poll.h @0ceaf38333191201001ea6ff4813aef604f0c792: POLLRDHUP 0x4000
    //   (rust-lang/libc @2eda1e52 src/unix/solarish/illumos.rs line 94: illumos only).
    // Oracle Solaris: none. A Solaris 11.0 sys/poll.h (Arquivotheca/solaris11@766b42f8) has none, and
    //   rust-lang/libc's solaris.rs has none either; main's poll backend used 0x4000 on Solaris while the
    //   event-ports backend (correctly) used none.
    [TestCase("Illumos", 0x4000)]
    [TestCase("Solaris", 0)]
    [TestCase("Linux", 0x2000)]
    // FreeBSD: sys/sys/poll.h POLLRDHUP 0x4000 (rust-lang/libc @2eda1e52 freebsd/mod.rs, beside POLLINIGNEOF 0x2000);
    //   main said none (found by the issue-20 review). Probed at run time like illumos's.
    [TestCase("FreeBSD", 0x4000)]
    [TestCase("MacOS", 0)]
    [TestCase("OpenBSD", 0)]
    public void PollRdHupIsTheHeadersValue(string os, int expected) => Assert.That((int)OsAbi.PollRdHup(Os(os)), Is.EqualTo(expected));

    [Test(Description = "The event-ports backend's poll bits and the poll backend's POLLRDHUP come from one table.")]
    public void EventPortBitsShareThePollTable()
    {
        Assert.That(IoMux.Backends.EventPorts.PortPollBits.Illumos.RdHup, Is.EqualTo(OsAbi.PollRdHup(UnixFlavor.Illumos)));
        Assert.That(IoMux.Backends.EventPorts.PortPollBits.Solaris.RdHup, Is.EqualTo(OsAbi.PollRdHup(UnixFlavor.Solaris)));
    }

    // Each layout below was compiled: the struct copied from the cited header into a C file outside the repository
    // (x86-64 type widths from the OS's machine headers), gcc 12.2 -m64, printing offsetof/sizeof. docs/BACKENDS.md
    // has the table.
    // OpenBSD (5.5 and later; amd64): openbsd/src sys/sys/stat.h rev 1.26 @4b9a7a17dc8721315e4356256ab32b7438678d48
    //   lines 45-76: st_mode (u32) first, line 46; st_mtim line 55 at 48; st_size line 65 at 80; sizeof 128.
    [TestCase("OpenBSD", 0, 4, 80, 48, 128, "fstat")]
    // DragonFly (x86_64): DragonFlyBSD/DragonFlyBSD sys/sys/stat.h @05eaf8a230579a4f34994da2a5d2490bb6b6d2f8 lines 64-84:
    //   ino (u64), nlink (u32), dev (u32), then st_mode (u16) line 68 at 16; st_mtim line 74 at 48; st_size line 76 at 80.
    [TestCase("DragonFly", 16, 2, 80, 48, 128, "fstat")]
    // NetBSD (5.0 and later; amd64): NetBSD/src sys/sys/stat.h rev 1.63.12.4 @01298e0dd111a0b73201d798b224753c99236ccb
    //   lines 59-89: st_mode (u32) line 61 at 8; st_mtim line 70 at 64; st_size line 83 at 112; sizeof 152. The header
    //   renames fstat to __fstat50 (plain fstat is the stat12 compat entry, a different layout).
    [TestCase("NetBSD", 8, 4, 112, 64, 152, "__fstat50")]
    // FreeBSD 12 and later (amd64, ino64): rust-lang/libc freebsd12/mod.rs @2eda1e52 lines 224-256.
    [TestCase("FreeBSD", 24, 2, 112, 64, 224, "fstat")]
    // macOS (64-bit inode): xnu bsd/sys/stat.h xnu-11417.101.15 (e3723e1f) lines 166-182, __DARWIN_STRUCT_STAT64.
    [TestCase("MacOS", 4, 2, 96, 48, 144, "fstat$INODE64")]
    // illumos amd64: rust-lang/libc solarish/mod.rs @2eda1e52 lines 313-331 (the _LP64 struct of sys/stat.h).
    [TestCase("Illumos", 16, 4, 40, 64, 128, "fstat")]
    public void StatLayoutIsTheCompiledHeaders(string os, int mode, int modeWidth, int size, int modified, int structSize, string symbol) =>
        Assert.That(OsAbi.Stat(Os(os), Architecture.X64), Is.EqualTo(new StatLayout(mode, modeWidth, size, modified, structSize, symbol)));

    [Test(Description = "macOS x86-64 binds the 64-bit-inode entry point; arm64 exports it as plain fstat.")]
    public void MacStatSymbolDependsOnTheArchitecture()
    {
        Assert.That(OsAbi.Stat(UnixFlavor.MacOS, Architecture.X64).FstatSymbol, Is.EqualTo("fstat$INODE64"));
        Assert.That(OsAbi.Stat(UnixFlavor.MacOS, Architecture.Arm64).FstatSymbol, Is.EqualTo("fstat"));
    }

    // .NET's OSDescription is uname's sysname, release and version.
    [TestCase("DragonFly 6.4-RELEASE DragonFly v6.4.0-RELEASE #0", "DragonFly")]
    [TestCase("NetBSD 10.0 NetBSD 10.0 (GENERIC) #0", "NetBSD")]
    [TestCase("OpenBSD 7.6 GENERIC.MP#338", "OpenBSD")]
    [TestCase("SunOS 5.11 omnios-r151050-2b1ba0bdd6", "Illumos")]
    [TestCase("SunOS 5.11 illumos-9d7b4d6e2e", "Illumos")]
    [TestCase("SunOS 5.11 joyent_20240516T000455Z", "Illumos")]
    [TestCase("SunOS 5.11 11.4.42.111.0", "Solaris")]
    public void TheOsIsToldApartByItsName(string description, string expected) =>
        Assert.That(Platform.Classify(description), Is.EqualTo(Os(expected)));

    [Test(Description = "DragonFly's OS name has no \"BSD\" in it; kqueue must still count as available there.")]
    public void KqueueIsAvailableOnDragonFly()
    {
        Assert.That(KqueueBackend.UnsupportedReason(CoreInterop.Platform.Classify("DragonFly 6.4-RELEASE DragonFly v6.4.0-RELEASE #0"), libKqueueNamed: false), Is.Null);
        Assert.That(KqueueBackend.UnsupportedReason(CoreInterop.UnixFlavor.Illumos, libKqueueNamed: false), Is.Not.Null);
        Assert.That(KqueueBackend.UnsupportedReason(CoreInterop.UnixFlavor.Linux, libKqueueNamed: true), Is.Null, "libkqueue named");
    }

    // apple-oss-distributions/xnu bsd/sys/event.h: EVFILT_SYSCOUNT 17 at xnu-10002.81.5 (5e3eaea3) line 89, 18 since
    //   xnu-10063.101.15 (macOS 14.4; commit 94d3b452840153a99b38a3a9659680b2a006908e) line 89.
    // mheily/libkqueue include/sys/event.h: 11 at v2.5.1 line 105, 12 since v2.6.0 (commit
    //   65f0c2874eb86915b12a462605123ca458976425) line 105, which added EVFILT_LIBKQUEUE (-12).
    [Test]
    public void FilterCountsAreTheNewestHeaders()
    {
        Assert.That(KqueueProfile.MacOS.FilterCount, Is.EqualTo(18));
        Assert.That(KqueueProfile.LibKqueue.FilterCount, Is.EqualTo(12));
    }

    // illumos-gate usr/src/uts/common/fs/sockfs/sockcommon_sops.c so_getpeername: ENOTCONN when not SS_ISCONNECTED,
    // EINVAL when SS_CANTSENDMORE (a local SHUT_WR) "for X/Open". Hangup derivation must read that EINVAL as
    // connected, or a half-closed socket whose peer then finishes never shows a read hangup there.
    [Test]
    public void GetpeernameEinvalAfterLocalShutWrCountsAsConnectedOnIllumos()
    {
        var illumos = OsCalls.WithNumbersOf(CoreInterop.UnixFlavor.Illumos);
        var solaris = OsCalls.WithNumbersOf(CoreInterop.UnixFlavor.Solaris);
        var linux = OsCalls.WithNumbersOf(CoreInterop.UnixFlavor.Linux);
        Assert.That(HangupDerivation.PeerNameMeansConnected(22 /* EINVAL */, illumos), Is.True);
        Assert.That(HangupDerivation.PeerNameMeansConnected(22, solaris), Is.True);
        Assert.That(HangupDerivation.PeerNameMeansConnected(134 /* illumos ENOTCONN */, illumos), Is.False, "never connected");
        Assert.That(HangupDerivation.PeerNameMeansConnected(22, linux), Is.False, "Linux never says EINVAL for it");
        Assert.That(HangupDerivation.PeerNameMeansConnected(0, linux), Is.True);
    }

    [Test(Description = "The read-hangup probe sees a bit the kernel reports (Linux's POLLRDHUP 0x2000) and not one it does not (illumos's 0x4000 means nothing to Linux poll): how an illumos release without POLLRDHUP is detected.")]
    public void TheReadHangupProbeTellsAKnownBitFromAnUnknownOne()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("the two bits' meanings are Linux's");
        Assert.That(ReadHangupProbe.KernelReports(0x2000), Is.True, "Linux POLLRDHUP");
        Assert.That(ReadHangupProbe.KernelReports(0x4000), Is.False, "not a poll bit on Linux");
        Assert.That(ReadHangupProbe.KernelReports(0), Is.False);
    }
}
