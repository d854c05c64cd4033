using System.Runtime.InteropServices;

namespace IoMux.Interop;

/// <summary>The Unix systems IoMux tells apart. illumos and Oracle Solaris share most of their ABI but not all of
/// it (POLLRDHUP), so they are two.</summary>
internal enum UnixFlavor : byte
{
    /// <summary>None of the below (values fall back to the 4.4BSD ones).</summary>
    Unknown,
    Linux,
    FreeBSD,
    MacOS,
    NetBSD,
    OpenBSD,
    DragonFly,
    Illumos,
    Solaris,
}

/// <summary>Where struct stat's fields sit on one OS (x86-64 unless the OS's other 64-bit ports differ), and which
/// libc symbol fills that layout.</summary>
/// <param name="ModeOffset">offsetof(st_mode).</param>
/// <param name="ModeWidth">sizeof(mode_t): 2 or 4.</param>
/// <param name="SizeOffset">offsetof(st_size) (a 64-bit off_t everywhere).</param>
/// <param name="ModifiedOffset">offsetof(st_mtim) (its tv_sec, a 64-bit time_t, comes first).</param>
/// <param name="Size">sizeof(struct stat).</param>
/// <param name="FstatSymbol">The libc entry point whose struct this is.</param>
internal readonly record struct StatLayout(int ModeOffset, int ModeWidth, int SizeOffset, int ModifiedOffset, int Size, string FstatSymbol);

/// <summary>The errno values a backend tells apart in a kernel's answer; -1 where the OS has no such error.</summary>
/// <param name="Enoent">ENOENT.</param>
/// <param name="Eintr">EINTR.</param>
/// <param name="Ebadf">EBADF.</param>
/// <param name="Einval">EINVAL.</param>
/// <param name="Enotconn">ENOTCONN.</param>
/// <param name="Etime">ETIME (port_getn's timeout).</param>
/// <param name="Ebadfd">EBADFD (port_associate of a closed descriptor).</param>
/// <param name="Enotcapable">ENOTCAPABLE (FreeBSD's Capsicum).</param>
internal readonly record struct KernelErrnos(int Enoent, int Eintr, int Ebadf, int Einval, int Enotconn, int Etime, int Ebadfd, int Enotcapable);

/// <summary>
/// The per-OS numbers IoMux passes to libc outside the backends' own tables: one place for each fact, each a pure
/// function of the OS so that a test pins every column on any machine (tests/IoMux.Tests/PerOsAbiTests.cs). Every
/// value cites the header it was read from; docs/BACKENDS.md holds the same table.
/// </summary>
internal static class OsAbi
{
    /// <summary>FIONREAD. Linux 0x541B (include/uapi/asm-generic/ioctls.h). The 4.4BSD descendants, macOS, illumos
    /// and Solaris: <c>_IOR('f', 127, int)</c> = IOC_OUT 0x40000000 | sizeof(int) &lt;&lt; 16 | 'f' &lt;&lt; 8 | 127 =
    /// 0x4004667F. illumos: usr/src/uts/common/sys/filio.h line 60 and sys/ioccom.h (illumos-gate
    /// 7082e811fdedd165abf44baf5541a279e4645026, 0ceaf38333191201001ea6ff4813aef604f0c792); rust-lang/libc solarish/mod.rs
    /// line 843 (2eda1e52) agrees. Before issue 20 illumos had 0x667F, without the IOC_OUT and size bits: the ioctl
    /// failed and no read hangup was ever derived there.</summary>
    public static nuint FionRead(UnixFlavor os) => os == UnixFlavor.Linux ? 0x541Bu : 0x4004667Fu;

    /// <summary>RLIMIT_NOFILE. Linux 7 (include/uapi/asm-generic/resource.h; x86-64 and arm64 use the generic table).
    /// 8 on every 4.4BSD descendant and macOS: openbsd/src sys/sys/resource.h line 90 (08f631a7), NetBSD/src
    /// sys/sys/resource.h line 89 (021a0f49), DragonFlyBSD sys/sys/resource.h line 95 (04a0f5ef), freebsd-src and xnu
    /// bsd/sys/resource.h (5 is RLIMIT_RSS on all of them). illumos and Solaris 5 (illumos-gate
    /// usr/src/uts/common/sys/resource.h @ f35c5cf1; rust-lang/libc solarish/mod.rs line 1330).</summary>
    public static int RlimitNofile(UnixFlavor os) => os switch
    {
        UnixFlavor.Linux => 7,
        UnixFlavor.Illumos or UnixFlavor.Solaris => 5,
        _ => 8,
    };

    /// <summary>POLLRDHUP, or 0 where the OS has none. Linux 0x2000 (include/uapi/asm-generic/poll.h). illumos 0x4000
    /// (usr/src/uts/common/sys/poll.h @ 0ceaf383; rust-lang/libc illumos.rs line 94). Oracle Solaris: none (a Solaris
    /// 11.0 sys/poll.h, Arquivotheca/solaris11@766b42f8, has none, and rust-lang/libc's solaris.rs has none; 11.4 has no
    /// public header). FreeBSD 0x4000 (sys/sys/poll.h "half shut down", added in the 13 era; the stored freebsd-src
    /// copy @039ea811, from 2012, predates it; rust-lang/libc @2eda1e52 src/unix/bsd/freebsdlike/freebsd/mod.rs has
    /// POLLRDHUP 0x4000 beside POLLINIGNEOF 0x2000): probed at run time, as the release that gained it is not pinned
    /// here. macOS, NetBSD, OpenBSD, DragonFly: none.</summary>
    public static short PollRdHup(UnixFlavor os) => os switch
    {
        UnixFlavor.Linux => 0x2000,
        UnixFlavor.Illumos or UnixFlavor.FreeBSD => 0x4000,
        _ => 0,
    };

    /// <summary>AF_INET6. Linux 10; FreeBSD and DragonFly 28; macOS 30; NetBSD and OpenBSD 24 (NetBSD/src sys/sys/socket.h
    /// @ 00285d2d, openbsd/src sys/sys/socket.h rev 1.88 line 171 @ 028dbc3c; rust-lang/libc netbsdlike/mod.rs line
    /// 498); illumos and Solaris 26 (illumos-gate usr/src/uts/common/sys/socket.h @ 0250c53a).</summary>
    public static int AfInet6(UnixFlavor os) => os switch
    {
        UnixFlavor.Linux => 10,
        UnixFlavor.Illumos or UnixFlavor.Solaris => 26,
        UnixFlavor.MacOS => 30,
        UnixFlavor.NetBSD or UnixFlavor.OpenBSD => 24,
        _ => 28,
    };

    /// <summary>The SO_REUSEPORT a listener group sets, or null where the OS has none. Linux 15; FreeBSD's balancing
    /// SO_REUSEPORT_LB 0x10000; the other BSDs and macOS 0x200 (openbsd/src sys/sys/socket.h line 98). illumos has none:
    /// usr/src/uts/common/sys/socket.h @ 0250c53ad267726f2438e3c6556199a0bbf588a2 line 141 gives 0x200 to
    /// SO_DGRAM_ERRIND and defines no SO_REUSEPORT; rust-lang/libc's solarish modules have none for Solaris either.</summary>
    public static int? SoReusePort(UnixFlavor os) => os switch
    {
        UnixFlavor.Linux => 15,
        UnixFlavor.FreeBSD => 0x10000,
        UnixFlavor.Illumos or UnixFlavor.Solaris => null,
        _ => 0x200,
    };

    /// <summary>sizeof(sockaddr_un.sun_path), the terminating NUL included. Linux 108 (include/uapi/linux/un.h
    /// UNIX_PATH_MAX); illumos and Solaris 108 (illumos-gate usr/src/uts/common/sys/un.h); 104 on the 4.4BSD
    /// descendants and macOS (freebsd-src sys/sys/un.h, xnu bsd/sys/un.h), after sun_len and an 8-bit sun_family. Both
    /// layouts compiled with gcc 12.2 -m64 from the headers' structs (docs/BACKENDS.md "socket addresses"): sun_path
    /// at offset 2 everywhere, sizeof 110 (Linux, illumos) and 106 (BSD).</summary>
    public static int SunPathLength(UnixFlavor os) => os is UnixFlavor.Linux or UnixFlavor.Illumos or UnixFlavor.Solaris ? 108 : 104;

    /// <summary>SOL_SOCKET. Linux 1 (include/uapi/asm-generic/socket.h); 0xffff on the 4.4BSD descendants, macOS,
    /// illumos and Solaris (freebsd-src sys/sys/socket.h @ e87a6b5d; illumos-gate usr/src/uts/common/sys/socket.h @
    /// 0250c53a "#define SOL_SOCKET 0xffff").</summary>
    public static int SolSocket(UnixFlavor os) => os == UnixFlavor.Linux ? 1 : 0xffff;

    /// <summary>SO_TYPE. Linux 3 (include/uapi/asm-generic/socket.h); 0x1008 elsewhere (freebsd-src sys/sys/socket.h @
    /// e87a6b5d; illumos-gate sys/socket.h @ 0250c53a "#define SO_TYPE 0x1008").</summary>
    public static int SoType(UnixFlavor os) => os == UnixFlavor.Linux ? 3 : 0x1008;

    /// <summary>SOCK_STREAM, as getsockopt(SO_TYPE) answers it. 1 on Linux and every BSD; 2 on illumos and Solaris, where
    /// SOCK_STREAM is NC_TPI_COTS and SOCK_DGRAM is 1 (illumos-gate usr/src/uts/common/sys/socket.h @ 0250c53a).</summary>
    public static int SockStream(UnixFlavor os) => os is UnixFlavor.Illumos or UnixFlavor.Solaris ? 2 : 1;

    /// <summary>The errno values a backend compares a kernel answer with, per OS (<see cref="KernelErrnos"/>).
    /// ENOENT 2, EINTR 4, EBADF 9 and EINVAL 22 are Version 7's numbers and the same on every OS here. Linux:
    /// include/uapi/asm-generic/errno.h (ENOTCONN 107, EBADFD 77, ETIME 62) and errno-base.h. FreeBSD: sys/sys/errno.h @
    /// e97286a3 (ENOTCONN 57; ENOTCAPABLE 93, Capsicum); macOS, NetBSD, OpenBSD and DragonFly share the 4.4BSD socket
    /// numbers (ENOTCONN 57) and have no EBADFD or ENOTCAPABLE IoMux could meet. illumos and Solaris: SVR4 numbering,
    /// usr/src/uts/common/sys/errno.h @ 7c478bd9 (ENOTCONN 134, ETIME 62, EBADFD 81). ETIME, a STREAMS error: macOS 101
    /// (xnu-11417.101.15 bsd/sys/errno.h line 249), NetBSD 92 (rust-lang/libc @2eda1e52 netbsd/mod.rs line 908: "STREAM
    /// ioctl timeout"), none on FreeBSD, OpenBSD and DragonFly (no such define in their errno.h). ETIME is asked for only where
    /// event ports exist.</summary>
    public static KernelErrnos Errnos(UnixFlavor os) => os switch
    {
        UnixFlavor.Linux => new(Enoent: 2, Eintr: 4, Ebadf: 9, Einval: 22, Enotconn: 107, Etime: 62, Ebadfd: 77, Enotcapable: -1),
        UnixFlavor.Illumos or UnixFlavor.Solaris => new(2, 4, 9, 22, Enotconn: 134, Etime: 62, Ebadfd: 81, Enotcapable: -1),
        UnixFlavor.FreeBSD => new(2, 4, 9, 22, Enotconn: 57, Etime: -1, Ebadfd: -1, Enotcapable: 93),
        UnixFlavor.MacOS => new(2, 4, 9, 22, Enotconn: 57, Etime: 101, Ebadfd: -1, Enotcapable: -1),
        UnixFlavor.NetBSD => new(2, 4, 9, 22, Enotconn: 57, Etime: 92, Ebadfd: -1, Enotcapable: -1),
        _ => new(2, 4, 9, 22, Enotconn: 57, Etime: -1, Ebadfd: -1, Enotcapable: -1),
    };

    /// <summary>struct stat, every layout compiled with gcc -m64 from the header's struct (copied outside the
    /// repository with the OS's x86-64 type widths; docs/BACKENDS.md "struct stat per OS"):
    /// Linux x86-64 (glibc): mode 24 (u32), size 48, mtim 88, sizeof 144; the generic Linux layout (arm64, riscv64):
    /// mode 16, size 48, mtim 88, sizeof 128 (both checked against this machine's headers by LayoutTests).
    /// FreeBSD 12+ (ino64): mode 24 (u16), size 112, mtim 64, sizeof 224 (rust-lang/libc freebsd12/mod.rs lines 224-256).
    /// macOS (64-bit inode): mode 4 (u16), size 96, mtim 48, sizeof 144 (xnu bsd/sys/stat.h xnu-11417.101.15 lines
    /// 166-182); x86-64 exports that layout as fstat$INODE64.
    /// illumos amd64: mode 16 (u32), size 40, mtim 64, sizeof 128 (rust-lang/libc solarish/mod.rs lines 313-331).
    /// OpenBSD 5.5+: mode 0 (u32), size 80, mtim 48, sizeof 128 (openbsd/src sys/sys/stat.h rev 1.26 lines 45-76).
    /// DragonFly: mode 16 (u16), size 80, mtim 48, sizeof 128 (DragonFlyBSD sys/sys/stat.h @ 05eaf8a2 lines 64-84).
    /// NetBSD 5+: mode 8 (u32), size 112, mtim 64, sizeof 152 (NetBSD/src sys/sys/stat.h rev 1.63.12.4 lines 59-89),
    /// filled by __fstat50: the header renames fstat, and the plain symbol is the stat12 compat entry.</summary>
    public static StatLayout Stat(UnixFlavor os, Architecture architecture) => os switch
    {
        UnixFlavor.Linux => architecture == Architecture.X64 ? new(24, 4, 48, 88, 144, "fstat") : new(16, 4, 48, 88, 128, "fstat"),
        UnixFlavor.FreeBSD => new(24, 2, 112, 64, 224, "fstat"),
        UnixFlavor.MacOS => new(4, 2, 96, 48, 144, architecture == Architecture.X64 ? "fstat$INODE64" : "fstat"),
        UnixFlavor.Illumos or UnixFlavor.Solaris => new(16, 4, 40, 64, 128, "fstat"),
        UnixFlavor.OpenBSD => new(0, 4, 80, 48, 128, "fstat"),
        UnixFlavor.DragonFly => new(16, 2, 80, 48, 128, "fstat"),
        UnixFlavor.NetBSD => new(8, 4, 112, 64, 152, "__fstat50"),
        // An OS IoMux has no table for: FreeBSD's, the most common BSD layout (descriptor kinds may come out wrong).
        _ => new(24, 2, 112, 64, 224, "fstat"),
    };

    /// <summary>POLLRDHUP as this kernel reports it: the header's value (<see cref="PollRdHup"/>), confirmed at run time
    /// where the release that introduced it is not known (illumos: the bit was added in the gate's history, and an
    /// older release ignores it without an error). Linux has had it since 2.6.17 and is not probed.</summary>
    public static readonly short ReadHangupBit = Platform.Flavor == UnixFlavor.Linux
        ? PollRdHup(UnixFlavor.Linux)
        : ReadHangupProbe.KernelReports(PollRdHup(Platform.Flavor)) ? PollRdHup(Platform.Flavor) : (short)0;
}

/// <summary>Asks the kernel whether it reports a read-hangup poll bit: a socket pair whose other end shut its writing
/// side, polled at once for POLLIN and the bit. A kernel that knows the bit returns it; one that does not ignores it
/// (poll(2) reports only what it knows).</summary>
internal static unsafe partial class ReadHangupProbe
{
    [LibraryImport("libc", SetLastError = true)] private static partial int poll(PollFd* fds, nuint count, int timeoutMs);

    /// <summary>True when poll(2) reports <paramref name="bit"/> for a socket whose peer shut its writing side.</summary>
    public static bool KernelReports(short bit)
    {
        if (bit == 0)
            return false;
        int* pair = stackalloc int[2];
        if (LibC.socketpair(1 /* AF_UNIX, every OS */, OsAbi.SockStream(Platform.Flavor), 0, pair) != 0)
            return false;
        try
        {
            LibC.shutdown(pair[1], 1 /* SHUT_WR */);
            var fd = new PollFd { Descriptor = pair[0], Events = (short)(0x1 /* POLLIN */ | bit) };
            return poll(&fd, 1, 0) == 1 && (fd.ReturnedEvents & bit) != 0;
        }
        finally
        {
            LibC.close(pair[0]);
            LibC.close(pair[1]);
        }
    }
}

/// <summary>struct pollfd: 8 bytes everywhere (the poll backend's and the probe's).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PollFd
{
    public int Descriptor;
    public short Events;
    public short ReturnedEvents;
}
