namespace IoMux.Backends.Kqueue;

/// <summary>
/// One OS's kqueue as the backend uses it: the numbers of the filters it names, whether the OS has a filter
/// for out-of-band data, and the struct layout. Every value comes from that OS's own <c>sys/event.h</c>; the
/// file and revision are cited on each platform below, and docs/research/kqueue-ports-constants.md holds the
/// full tables with the kernel behaviours. Filter numbers differ per OS and an unknown one is refused with
/// EINVAL (also in an EV_DELETE), so the backend never names a filter its OS lacks.
/// </summary>
/// <param name="Name">The OS, for messages and model profiles.</param>
/// <param name="Layout">struct kevent on this OS.</param>
/// <param name="Read">EVFILT_READ.</param>
/// <param name="Write">EVFILT_WRITE.</param>
/// <param name="Except">EVFILT_EXCEPT, or null where the OS has none (no native <see cref="Interest.Priority"/>).</param>
/// <param name="ExceptFlags">The fflags asking EVFILT_EXCEPT for out-of-band data (NOTE_OOB; its value differs per OS).</param>
/// <param name="User">EVFILT_USER, or null where the OS has none (the wake then uses a pipe).</param>
/// <param name="FilterCount">EVFILT_SYSCOUNT: the kernel accepts filters -1 .. -FilterCount (NetBSD: 0 .. FilterCount-1).</param>
/// <param name="PositiveFilters">NetBSD numbers its filters from 0 upwards.</param>
/// <param name="CloseKeepsKnotes">close(2) does not remove a descriptor's knotes (libkqueue, a user-space kqueue
/// on Linux: mheily/libkqueue BUGS.md "If a file descriptor outside of kqueue is closed, the internal kqueue state is
/// not cleaned up"): the backend replaces the queue when such a knote keeps firing.</param>
/// <param name="ReAddNeedsFreshKnote">An EV_ADD of an existing knote without EV_CLEAR fails (libkqueue on Linux): a
/// level or oneshot re-arm deletes the knote and adds a new one instead of updating it.</param>
internal sealed record KqueueProfile(
    string Name,
    KeventLayout Layout,
    short Read,
    short Write,
    short? Except,
    uint ExceptFlags,
    short? User,
    int FilterCount,
    bool PositiveFilters = false,
    bool ReAddNeedsFreshKnote = false,
    bool CloseKeepsKnotes = false)
{
    /// <summary>Whether the kernel's range check (FreeBSD <c>kqueue_fo_find</c>, xnu <c>kevent_register</c>,
    /// OpenBSD and DragonFly <c>kqueue_register</c>) accepts <paramref name="filter"/>.</summary>
    public bool FilterInRange(short filter) => PositiveFilters
        ? filter >= 0 && filter < FilterCount
        : filter < 0 && filter + FilterCount >= 0;

    /// <summary>FreeBSD 13 and 14: sobomax/freebsd14_vendor sys/sys/event.h@5836bb2ab050 (EVFILT_READ -1,
    /// EVFILT_WRITE -2, EVFILT_USER -11, EVFILT_SYSCOUNT 13, no EVFILT_EXCEPT and no NOTE_OOB; struct kevent 64
    /// bytes since 12). 13 is assumed equal to 14 (EVFILT_EMPTY, -13, was the last filter added, in 12; no 13
    /// header was readable).</summary>
    public static KqueueProfile FreeBsd14 { get; } = new("FreeBSD 14", KeventLayout.FreeBsd, -1, -2, null, 0, -11, 13);

    /// <summary>FreeBSD 15: CHERI-Alliance/freebsd-src sys/sys/event.h@77adceafb231 adds EVFILT_JAIL -14 and
    /// EVFILT_JAILDESC -15 (EVFILT_SYSCOUNT 15); still no EVFILT_EXCEPT. -15 is a jail descriptor filter there,
    /// which sockets refuse (uipc_socket.c soo_kqfilter: "default: return (EINVAL)").</summary>
    public static KqueueProfile FreeBsd15 { get; } = FreeBsd14 with { Name = "FreeBSD 15", FilterCount = 15 };

    /// <summary>macOS: apple-oss-distributions/xnu bsd/sys/event.h@1b191cb58250 (EVFILT_EXCEPT -15 with
    /// NOTE_OOB 0x2, EVFILT_USER -10; struct kevent 32 bytes). EVFILT_SYSCOUNT is 18 since xnu-10063.101.15 (macOS 14.4;
    /// commit 94d3b452840153a99b38a3a9659680b2a006908e, bsd/sys/event.h line 89), 17 before (xnu-10002.81.5 line 89).
    /// Only the range check reads it, and no filter IoMux names lies between -17 and -18.</summary>
    public static KqueueProfile MacOS { get; } = new("macOS", KeventLayout.Darwin, -1, -2, -15, 0x2, -10, 18);

    /// <summary>NetBSD 10: sys/sys/event.h rev 1.54 (2022/07/19): EVFILT_READ 0U, EVFILT_WRITE 1U, EVFILT_USER 8U,
    /// EVFILT_SYSCOUNT 10U, no EVFILT_EXCEPT; struct kevent 40 bytes (uint32 filter and flags). NetBSD 11 grew struct
    /// kevent to 72 bytes behind a new symbol, __kevent100; the 40-byte struct is now <c>struct kevent100</c>
    /// (sys/compat/sys/event.h rev 1.4, 2023/07/29) and __kevent50, which IoMux binds, is kept as a converting shim
    /// (copies each 40-byte change into the new struct, calls __kevent100, copies the events back). So the 40-byte
    /// layout stays right on 11 at the cost of a copy per call; binding __kevent100 would need the 72-byte layout
    /// (its extra ext[4] fields) and a probe for the symbol.</summary>
    public static KqueueProfile NetBsd { get; } = new("NetBSD", KeventLayout.NetBsd, 0, 1, null, 0, 8, 10, PositiveFilters: true);

    /// <summary>OpenBSD 7.8 and later: sys/sys/event.h rev 1.74 (2025/05/10): EVFILT_EXCEPT -9 with NOTE_OOB
    /// 0x4 (0x2 is NOTE_EOF there), EVFILT_USER -10, EVFILT_SYSCOUNT 10; struct kevent 32 bytes.</summary>
    public static KqueueProfile OpenBsd { get; } = new("OpenBSD", KeventLayout.Darwin, -1, -2, -9, 0x4, -10, 10);

    /// <summary>OpenBSD 6.8 to 7.7: EVFILT_EXCEPT (-9) but no EVFILT_USER yet (added to -current in May 2025);
    /// EVFILT_SYSCOUNT 9 (inferred from rev 1.74 minus EVFILT_USER). The backend probes EVFILT_USER at start and
    /// falls back to a pipe, so one table serves both; this profile exists for the model.</summary>
    public static KqueueProfile OpenBsdWithoutUser { get; } = OpenBsd with { Name = "OpenBSD 7.7", User = null, FilterCount = 9 };

    /// <summary>DragonFly: tuxillo/DragonFlyBSD sys/sys/event.h@f3cb9a78af3e (EVFILT_EXCEPT -8 with NOTE_OOB 0x2,
    /// EVFILT_USER -9, EVFILT_SYSCOUNT 10, EV_RECEIPT and EV_DISPATCH present; struct kevent 32 bytes).</summary>
    public static KqueueProfile DragonFly { get; } = new("DragonFly", KeventLayout.Darwin, -1, -2, -8, 0x2, -9, 10);

    /// <summary>libkqueue (a user-space kqueue for Linux): mheily/libkqueue include/sys/event.h@126fd50891e7
    /// (FreeBSD's numbers, EVFILT_USER -11, no EVFILT_EXCEPT; struct kevent 32 bytes). EVFILT_SYSCOUNT is 12 since
    /// v2.6.0 (commit 65f0c2874eb86915b12a462605123ca458976425, include/sys/event.h line 105), which added
    /// EVFILT_LIBKQUEUE (-12); 11 before (v2.5.1 line 105).
    /// <para>libkqueue's Linux read and write filters cannot modify a knote: <c>evfilt_read_knote_modify</c> and
    /// <c>evfilt_write_knote_modify</c> return -1 (a STUB at mheily/libkqueue src/linux/read.c @04ca8661; at
    /// @f9660896 they accept only a change carrying EV_CLEAR), so an EV_ADD of an existing knote in level or oneshot
    /// mode fails there where every kernel updates it.</para></summary>
    public static KqueueProfile LibKqueue { get; } = new("libkqueue", KeventLayout.Darwin, -1, -2, null, 0, -11, 12, ReAddNeedsFreshKnote: true, CloseKeepsKnotes: true);

    /// <summary>Every platform above, for tests and model profiles.</summary>
    public static IReadOnlyList<KqueueProfile> All { get; } = [FreeBsd14, FreeBsd15, MacOS, NetBsd, OpenBsd, OpenBsdWithoutUser, DragonFly, LibKqueue];
}
