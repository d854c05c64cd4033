using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Models;

// The models' own numbers. Every value in this file was typed from the OS's header (cited beside it), never read
// from a backend type: a backend table that disagrees with these fails the model targets and the field-by-field
// comparison in ModelAbiCrossCheckTests (which names both citations). docs/research/kqueue-ports-constants.md
// holds the full header extracts the kqueue and event-port values come from.

/// <summary>The numbers of one modelled OS outside its event queue: what fstat, ioctl, getsockopt and getpeername
/// take and answer there, and the errno values.</summary>
/// <param name="Name">The OS.</param>
/// <param name="Os">Which flavor the backend must be told it runs on (its tables for that OS are selected).</param>
/// <param name="Citation">Where the numbers below come from.</param>
internal sealed record TargetAbi(string Name, UnixFlavor Os, string Citation)
{
    /// <summary>FIONREAD.</summary>
    public required nuint FionRead { get; init; }
    /// <summary>offsetof(st_mode), sizeof(mode_t), offsetof(st_size), offsetof(st_mtim), sizeof(struct stat) on x86-64.</summary>
    public required (int Mode, int ModeWidth, int Size, int Mtime, int StatSize) Stat { get; init; }
    /// <summary>The libc symbol that fills that struct.</summary>
    public required string FstatSymbol { get; init; }
    /// <summary>SOL_SOCKET, SO_TYPE.</summary>
    public required (int Level, int Type) SocketOption { get; init; }
    /// <summary>SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET.</summary>
    public required (int Stream, int Dgram, int SeqPacket) SocketTypes { get; init; }
    /// <summary>RLIMIT_NOFILE.</summary>
    public required int RlimitNofile { get; init; }
    /// <summary>AF_INET6.</summary>
    public required int AfInet6 { get; init; }
    /// <summary>POLLRDHUP, 0 where the OS has none.</summary>
    public required short PollRdHup { get; init; }
    /// <summary>ENOENT, EINTR, EBADF, EINVAL (Version 7's numbers everywhere), ENOTCONN, ETIME, EBADFD, ENOTTY,
    /// ENOPROTOOPT, ENOTSOCK; -1 where the OS has none.</summary>
    public required (int Enoent, int Eintr, int Ebadf, int Einval, int Enotconn, int Etime, int Ebadfd, int Enotty, int Enoprotoopt, int Enotsock) Errnos { get; init; }
    /// <summary>getpeername answers EINVAL for a connected socket after a local SHUT_WR (illumos-gate
    /// usr/src/uts/common/fs/sockfs/sockcommon_sops.c so_getpeername: "Added this check for X/Open").</summary>
    public bool PeerNameEinvalAfterShutdown { get; init; }

    // The 4.4BSD socket and errno numbers: freebsd-src sys/sys/socket.h @ e87a6b5d (SOL_SOCKET 0xffff, SO_TYPE 0x1008,
    // SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5), sys/sys/errno.h @ e97286a3 (ENOTTY 25, ENOTSOCK 38,
    // ENOPROTOOPT 42, ENOTCONN 57); xnu bsd/sys/errno.h and the other BSDs' have the same socket errors.
    private static readonly (int, int) BsdSocketOption = (0xffff, 0x1008);
    private static readonly (int, int, int) BsdSocketTypes = (1, 2, 5);
    private static readonly (int, int, int, int, int, int, int, int, int, int) BsdErrnos = (2, 4, 9, 22, 57, -1, -1, 25, 42, 38);

    /// <summary>FreeBSD 12 and later: POLLRDHUP 0x4000 (sys/sys/poll.h, "half shut down"); FIONREAD _IOR('f', 127, int) (sys/sys/filio.h); struct stat (ino64) mode u16 at 24,
    /// size 112, mtim 64, sizeof 224 (compiled: docs/BACKENDS.md "struct stat per OS"; rust-lang/libc freebsd12);
    /// RLIMIT_NOFILE 8 (sys/sys/resource.h); AF_INET6 28 (sys/sys/socket.h).</summary>
    public static TargetAbi FreeBsd { get; } = new("FreeBSD", UnixFlavor.FreeBSD, "freebsd-src sys/sys/{filio,stat,resource,socket,errno}.h")
    {
        FionRead = 0x4004667F, Stat = (24, 2, 112, 64, 224), FstatSymbol = "fstat", SocketOption = BsdSocketOption, SocketTypes = BsdSocketTypes,
        RlimitNofile = 8, AfInet6 = 28, PollRdHup = 0x4000, Errnos = BsdErrnos,
    };

    /// <summary>macOS (64-bit inode): struct stat mode u16 at 4, size 96, mtim 48, sizeof 144 (xnu bsd/sys/stat.h
    /// xnu-11417.101.15, compiled), filled by fstat$INODE64 on x86-64; AF_INET6 30 (bsd/sys/socket.h).</summary>
    public static TargetAbi MacOS { get; } = FreeBsd with
    {
        Name = "macOS", Os = UnixFlavor.MacOS, Citation = "xnu bsd/sys/{filio,stat,resource,socket,errno}.h",
        Stat = (4, 2, 96, 48, 144), FstatSymbol = "fstat$INODE64", AfInet6 = 30, PollRdHup = 0,
        Errnos = BsdErrnos with { Item6 = 101 }, // ETIME 101 (xnu bsd/sys/errno.h, a STREAMS error)
    };

    /// <summary>NetBSD 5+: __fstat50's struct stat mode u32 at 8, size 112, mtim 64, sizeof 152 (sys/sys/stat.h rev
    /// 1.63.12.4, compiled); AF_INET6 24 (sys/sys/socket.h @ 00285d2d).</summary>
    public static TargetAbi NetBsd { get; } = FreeBsd with
    {
        Name = "NetBSD", Os = UnixFlavor.NetBSD, Citation = "NetBSD/src sys/sys/{stat,socket,resource}.h",
        Stat = (8, 4, 112, 64, 152), FstatSymbol = "__fstat50", AfInet6 = 24, PollRdHup = 0,
        Errnos = BsdErrnos with { Item6 = 92 }, // ETIME 92 (sys/sys/errno.h: "STREAM ioctl timeout")
    };

    /// <summary>OpenBSD 5.5+: struct stat mode u32 at 0, size 80, mtim 48, sizeof 128 (sys/sys/stat.h rev 1.26, compiled);
    /// AF_INET6 24 (sys/sys/socket.h rev 1.88 line 171).</summary>
    public static TargetAbi OpenBsd { get; } = FreeBsd with
    {
        Name = "OpenBSD", Os = UnixFlavor.OpenBSD, Citation = "openbsd/src sys/sys/{stat,socket,resource}.h",
        Stat = (0, 4, 80, 48, 128), AfInet6 = 24, PollRdHup = 0,
    };

    /// <summary>DragonFly: struct stat mode u16 at 16, size 80, mtim 48, sizeof 128 (sys/sys/stat.h @ 05eaf8a2, compiled);
    /// AF_INET6 28.</summary>
    public static TargetAbi DragonFly { get; } = FreeBsd with
    {
        Name = "DragonFly", Os = UnixFlavor.DragonFly, Citation = "DragonFlyBSD sys/sys/{stat,socket,resource}.h",
        Stat = (16, 2, 80, 48, 128), PollRdHup = 0,
    };

    /// <summary>illumos (amd64): FIONREAD _IOR('f', 127, int) = 0x4004667F (usr/src/uts/common/sys/filio.h line 60,
    /// sys/ioccom.h); struct stat mode u32 at 16, size 40, mtim 64, sizeof 128 (compiled; rust-lang/libc solarish);
    /// SOL_SOCKET 0xffff, SO_TYPE 0x1008, SOCK_STREAM 2 (NC_TPI_COTS), SOCK_DGRAM 1, SOCK_SEQPACKET 6, AF_INET6 26
    /// (sys/socket.h @ 0250c53a); RLIMIT_NOFILE 5 (sys/resource.h); POLLRDHUP 0x4000 (sys/poll.h @ 0ceaf383); the SVR4
    /// errno numbers ENOTTY 25, ETIME 62, EBADFD 81, ENOTSOCK 95, ENOPROTOOPT 99, ENOTCONN 134 (sys/errno.h @ 7c478bd9).</summary>
    public static TargetAbi Illumos { get; } = new("illumos", UnixFlavor.Illumos, "illumos-gate usr/src/uts/common/sys/{filio,stat,socket,resource,poll,errno}.h")
    {
        FionRead = 0x4004667F, Stat = (16, 4, 40, 64, 128), FstatSymbol = "fstat", SocketOption = (0xffff, 0x1008), SocketTypes = (2, 1, 6),
        RlimitNofile = 5, AfInet6 = 26, PollRdHup = 0x4000, Errnos = (2, 4, 9, 22, 134, 62, 81, 25, 99, 95),
        PeerNameEinvalAfterShutdown = true,
    };

    /// <summary>Oracle Solaris 11: illumos's numbers without POLLRDHUP (a Solaris 11.0 sys/poll.h, Arquivotheca/solaris11
    /// @ 766b42f8, has none; 11.4 has no public header).</summary>
    public static TargetAbi Solaris { get; } = Illumos with { Name = "Solaris", Os = UnixFlavor.Solaris, Citation = "Solaris 11.0 sys/poll.h; illumos-gate for the rest", PollRdHup = 0 };

    /// <summary>Linux x86-64 (glibc 2.36 here), the OS underneath every model and libkqueue's: FIONREAD 0x541B
    /// (include/uapi/asm-generic/ioctls.h); struct stat mode u32 at 24, size 48, mtim 88, sizeof 144
    /// (sysdeps/unix/sysv/linux/x86/bits/struct_stat.h); the generic layout (arm64) mode at 16, sizeof 128
    /// (sysdeps/unix/sysv/linux/generic/bits/struct_stat.h); SOL_SOCKET 1, SO_TYPE 3 (asm-generic/socket.h); SOCK_STREAM 1,
    /// SOCK_DGRAM 2, SOCK_SEQPACKET 5; RLIMIT_NOFILE 7 (asm-generic/resource.h); AF_INET6 10; POLLRDHUP 0x2000
    /// (asm-generic/poll.h); ENOTTY 25, ETIME 62, EBADFD 77, ENOTSOCK 88, ENOPROTOOPT 92, ENOTCONN 107
    /// (asm-generic/errno.h).</summary>
    public static TargetAbi Linux { get; } = new("Linux", UnixFlavor.Linux, "linux include/uapi/asm-generic/*.h; glibc bits/struct_stat.h")
    {
        FionRead = 0x541B,
        Stat = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? (24, 4, 48, 88, 144) : (16, 4, 48, 88, 128),
        FstatSymbol = "fstat", SocketOption = (1, 3), SocketTypes = (1, 2, 5),
        RlimitNofile = 7, AfInet6 = 10, PollRdHup = 0x2000, Errnos = (2, 4, 9, 22, 107, 62, 77, 25, 92, 88),
    };

    /// <summary>Every OS above.</summary>
    public static IReadOnlyList<TargetAbi> All { get; } = [FreeBsd, MacOS, NetBsd, OpenBsd, DragonFly, Illumos, Solaris, Linux];

    /// <summary>Whether <paramref name="fd"/> is a socket underneath: fstat read with the model's own Linux layout
    /// (<see cref="Linux"/>), S_IFMT 0xF000, S_IFSOCK 0xC000.</summary>
    public static unsafe bool IsLinuxSocket(int fd)
    {
        byte* stat = stackalloc byte[256];
        return DescriptorProbe.Fstat(fd, stat) == 0 && (*(uint*)(stat + Linux.Stat.Mode) & 0xF000) == 0xC000;
    }

    /// <summary>A Linux errno as this OS numbers it (the errors the models pass on from the Linux calls underneath).</summary>
    public int FromLinux(int errno) => errno switch
    {
        107 => Errnos.Enotconn,
        62 => Errnos.Etime,
        77 => Errnos.Ebadfd,
        92 => Errnos.Enoprotoopt,
        88 => Errnos.Enotsock,
        _ => errno, // 1-34 are Version 7's everywhere; the models meet no other
    };
}

/// <summary>kqueue's numbers on one modelled OS.</summary>
/// <param name="Name">The profile (as the backend's table names it).</param>
/// <param name="Os">The OS's other numbers.</param>
/// <param name="Read">EVFILT_READ.</param>
/// <param name="Write">EVFILT_WRITE.</param>
/// <param name="Except">EVFILT_EXCEPT, or null.</param>
/// <param name="NoteOob">NOTE_OOB for EVFILT_EXCEPT (0 without it).</param>
/// <param name="User">EVFILT_USER, or null.</param>
/// <param name="SysCount">EVFILT_SYSCOUNT.</param>
/// <param name="PositiveFilters">Filters are numbered 0 .. SysCount-1 (NetBSD).</param>
/// <param name="DeleteLooksUpKnoteFirst">EV_DELETE of a closed descriptor is ENOENT, not EBADF (xnu kevent_register).</param>
/// <param name="ErrorKeepsFlags">An EV_ERROR entry keeps the change's flags (xnu: kev->flags |= EV_ERROR).</param>
/// <param name="Citation">The header.</param>
internal sealed record KqueueAbi(string Name, TargetAbi Os, short Read, short Write, short? Except, uint NoteOob, short? User, int SysCount,
    bool PositiveFilters, bool DeleteLooksUpKnoteFirst, bool ErrorKeepsFlags, string Citation)
{
    /// <summary>An EV_ADD of an existing descriptor knote without EV_CLEAR fails: libkqueue's Linux
    /// evfilt_read_knote_modify and evfilt_write_knote_modify return -1 (mheily/libkqueue src/linux/read.c
    /// @04ca8661: "return (-1); /* STUB */"; @f9660896 unless the change has EV_CLEAR). Every kernel updates the knote.</summary>
    public bool CannotModifyWithoutClear { get; init; }

    /// <summary>close(2) does not remove the descriptor's knotes: a user-space kqueue cannot see the close (mheily/libkqueue
    /// BUGS.md, Linux: "If a file descriptor outside of kqueue is closed, the internal kqueue state is not cleaned up").
    /// An EV_DELETE of the closed number succeeds and frees the knote (src/common/knote.c knote_delete releases it
    /// whatever kn_delete returns; src/linux/platform.c epoll_update takes EBADF on EPOLL_CTL_DEL as success and marks
    /// the udata stale), but the epoll entry stays while a dup keeps the file open and keeps firing; its events are
    /// dropped (linux_kevent_copyout skips stale udata) and kevent returns 0 events at once (src/common/kevent.c),
    /// before its timeout. Read at libkqueue HEAD f966089 (v2.7.0), by the issue-20 review.</summary>
    public bool CloseKeepsKnotes { get; init; }

    /// <summary>The EV_* flags and NOTE_TRIGGER: the same bits in every header below (FreeBSD sys/sys/event.h, xnu
    /// bsd/sys/event.h, NetBSD rev 1.54, OpenBSD rev 1.74, DragonFly, libkqueue include/sys/event.h).</summary>
    public const ushort EV_ADD = 0x1, EV_DELETE = 0x2, EV_ENABLE = 0x4, EV_DISABLE = 0x8, EV_ONESHOT = 0x10, EV_CLEAR = 0x20,
        EV_RECEIPT = 0x40, EV_DISPATCH = 0x80, EV_ERROR = 0x4000, EV_EOF = 0x8000;
    /// <summary>NOTE_TRIGGER.</summary>
    public const uint NOTE_TRIGGER = 0x01000000;

    /// <summary>Whether the kernel's range check accepts the filter (FreeBSD kqueue_fo_find, xnu kevent_register,
    /// OpenBSD and DragonFly kqueue_register, NetBSD kqueue_register's "kev->filter &lt; EVFILT_SYSCOUNT").</summary>
    public bool InRange(short filter) => PositiveFilters ? filter >= 0 && filter < SysCount : filter < 0 && -filter <= SysCount;

    /// <summary>FreeBSD 14: sobomax/freebsd14_vendor sys/sys/event.h @ 5836bb2a: READ -1, WRITE -2, USER -11, SYSCOUNT 13,
    /// no EVFILT_EXCEPT.</summary>
    public static KqueueAbi FreeBsd14 { get; } = new("FreeBSD 14", TargetAbi.FreeBsd, -1, -2, null, 0, -11, 13, false, false, false, "freebsd14_vendor sys/sys/event.h@5836bb2a");
    /// <summary>FreeBSD 15: CHERI-Alliance/freebsd-src sys/sys/event.h @ 77adceaf: EVFILT_JAIL -14, EVFILT_JAILDESC -15, SYSCOUNT 15.</summary>
    public static KqueueAbi FreeBsd15 { get; } = FreeBsd14 with { Name = "FreeBSD 15", SysCount = 15, Citation = "CHERI-Alliance/freebsd-src sys/sys/event.h@77adceaf" };
    /// <summary>macOS: xnu bsd/sys/event.h @ 1b191cb5 and 94d3b452 (xnu-10063.101.15): EXCEPT -15 with NOTE_OOB 0x2, USER -10, SYSCOUNT 18.</summary>
    public static KqueueAbi MacOS { get; } = new("macOS", TargetAbi.MacOS, -1, -2, -15, 0x2, -10, 18, false, true, true, "xnu bsd/sys/event.h@94d3b452");
    /// <summary>NetBSD 10: sys/sys/event.h rev 1.54: READ 0, WRITE 1, USER 8, SYSCOUNT 10, numbered upwards, no EVFILT_EXCEPT.</summary>
    public static KqueueAbi NetBsd { get; } = new("NetBSD", TargetAbi.NetBsd, 0, 1, null, 0, 8, 10, true, false, false, "NetBSD sys/sys/event.h rev 1.54");
    /// <summary>OpenBSD 7.8: sys/sys/event.h rev 1.74: EXCEPT -9 with NOTE_OOB 0x4, USER -10, SYSCOUNT 10.</summary>
    public static KqueueAbi OpenBsd { get; } = new("OpenBSD", TargetAbi.OpenBsd, -1, -2, -9, 0x4, -10, 10, false, false, false, "openbsd sys/sys/event.h rev 1.74");
    /// <summary>OpenBSD 6.8 to 7.7: no EVFILT_USER, SYSCOUNT 9 (rev 1.74 less EVFILT_USER; no such header was read).</summary>
    public static KqueueAbi OpenBsdWithoutUser { get; } = OpenBsd with { Name = "OpenBSD 7.7", User = null, SysCount = 9, Citation = "openbsd sys/sys/event.h rev 1.74 less EVFILT_USER" };
    /// <summary>DragonFly: tuxillo/DragonFlyBSD sys/sys/event.h @ f3cb9a78: EXCEPT -8 with NOTE_OOB 0x2, USER -9, SYSCOUNT 10.</summary>
    public static KqueueAbi DragonFly { get; } = new("DragonFly", TargetAbi.DragonFly, -1, -2, -8, 0x2, -9, 10, false, false, false, "DragonFlyBSD sys/sys/event.h@f3cb9a78");
    /// <summary>libkqueue v2.6+: mheily/libkqueue include/sys/event.h @ 65f0c287: FreeBSD's numbers, USER -11, no EXCEPT,
    /// SYSCOUNT 12 (EVFILT_LIBKQUEUE -12). It runs on Linux: the OS numbers are Linux's.</summary>
    public static KqueueAbi LibKqueue { get; } = new("libkqueue", TargetAbi.Linux, -1, -2, null, 0, -11, 12, false, false, false, "libkqueue include/sys/event.h@65f0c287")
    {
        CannotModifyWithoutClear = true,
        CloseKeepsKnotes = true,
    };

    /// <summary>Every profile.</summary>
    public static IReadOnlyList<KqueueAbi> All { get; } = [FreeBsd14, FreeBsd15, MacOS, NetBsd, OpenBsd, OpenBsdWithoutUser, DragonFly, LibKqueue];
}

/// <summary>Event ports' numbers (illumos usr/src/uts/common/sys/port.h @ 12ef7bd6: PORT_SOURCE_USER 3, PORT_SOURCE_FD 4;
/// sys/poll.h @ 0ceaf383: POLLIN 0x1, POLLPRI 0x2, POLLOUT 0x4, POLLERR 0x8, POLLHUP 0x10, POLLNVAL 0x20).</summary>
internal static class PortAbi
{
    /// <summary>PORT_SOURCE_USER, PORT_SOURCE_FD.</summary>
    public const ushort SourceUser = 3, SourceFd = 4;
    /// <summary>The poll bits shared by illumos, Solaris and Linux.</summary>
    public const int PollIn = 0x1, PollPri = 0x2, PollOut = 0x4, PollErr = 0x8, PollHup = 0x10, PollNval = 0x20;
}
