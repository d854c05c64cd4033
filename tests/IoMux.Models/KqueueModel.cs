using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Backends.Kqueue;
using IoMux.Interop;
using static IoMux.Models.KqueueAbi;

namespace IoMux.Models;

/// <summary>
/// A model of one OS's kqueue (a <see cref="KqueueAbi"/> profile: FreeBSD 14 and 15, macOS, NetBSD,
/// OpenBSD, DragonFly, libkqueue) on real Linux descriptors, so the kqueue backend runs the whole conformance
/// suite here. It is written from each OS's kernel source, not from the backend (docs/research/
/// kqueue-ports-constants.md cites every rule), and it refuses what that kernel refuses:
/// <list type="bullet">
/// <item>a filter outside the OS's range is EINVAL for every change, EV_DELETE included (FreeBSD
/// kern_event.c kqueue_fo_find/kqueue_register, xnu kevent_register, OpenBSD and DragonFly kqueue_register);
/// a filter in range that descriptors do not support (FreeBSD 15's EVFILT_JAILDESC on a socket) is EINVAL too
/// (uipc_socket.c soo_kqfilter: "default: return (EINVAL)");</item>
/// <item>an EV_ADD or EV_DELETE naming a closed descriptor is EBADF (fget before the knote lookup), except on
/// macOS where EV_DELETE looks the knote up first: ENOENT; EV_DELETE of a missing knote is ENOENT;</item>
/// <item>close(2) removes every knote of the descriptor (kqueue(2): "Calling close() on a file descriptor will
/// remove any kevents that reference the descriptor"), even while a dup keeps the file open;</item>
/// <item>EV_ADD of an existing knote updates fflags and udata and re-enables it but keeps the EV_CLEAR,
/// EV_ONESHOT and EV_DISPATCH it was created with (FreeBSD kqueue_register only copies those at creation);</item>
/// <item>an error entry has flags = EV_ERROR exactly on FreeBSD (kqueue_kevent overwrites them), EV_ERROR added to
/// the change's flags on macOS (kevent_register: kev->flags |= EV_ERROR), data = errno.</item>
/// </list>
/// Every change it refuses for a reason other than a closed descriptor or a missing knote is recorded in <see cref="Refused"/>:
/// the conformance suite over the models fails when the backend ever submitted such a change.
/// Knotes are kept per (ident, filter); each filter's knotes live in their own Linux epoll instance (one
/// descriptor can be watched once per epoll), nested under one top-level epoll that also watches an eventfd for
/// EVFILT_USER triggers. EV_CLEAR is EPOLLET, EV_ONESHOT and EV_DISPATCH are EPOLLONESHOT. What a delivered kevent
/// carries follows filt_soread/filt_sowrite: EVFILT_READ data = bytes buffered, EV_EOF when the read side is shut;
/// EVFILT_WRITE EV_EOF when this side can no longer write, and no write event for a connection-oriented socket that
/// is not connected (an unconnected UDP socket is writable); a never-connected socket's read filter reports
/// nothing; EV_EOF's fflags carries a socket error (the model says EIO: it cannot read which without consuming it).
/// Each behaviour is pinned by KqueueModelTests.
/// </summary>
internal sealed unsafe partial class KqueueModel : IKqueueSystem
{
    private const uint EPOLLIN = 0x1, EPOLLPRI = 0x2, EPOLLOUT = 0x4, EPOLLERR = 0x8, EPOLLHUP = 0x10, EPOLLRDHUP = 0x2000;
    private const uint EPOLLONESHOT = 1u << 30, EPOLLET = 1u << 31;

    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    private struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [LibraryImport("libc", SetLastError = true)] private static partial int epoll_create1(int flags);
    [LibraryImport("libc", SetLastError = true)] private static partial int epoll_ctl(int epfd, int op, int fd, EpollEvent* ev);
    [LibraryImport("libc", SetLastError = true)] private static partial int epoll_wait(int epfd, EpollEvent* events, int max, int timeoutMs);
    [LibraryImport("libc", SetLastError = true)] private static partial int eventfd(uint initval, int flags);
    [LibraryImport("libc", SetLastError = true)] private static partial nint send(int fd, void* buffer, nuint length, int flags);

    private sealed class Knote
    {
        public ulong Ident;
        public short Filter;
        public ushort Flags;   // EV_ONESHOT / EV_CLEAR / EV_DISPATCH as created
        public uint FFlags;
        public ulong UData;
        public bool Enabled;
        public bool InEpoll;
        public bool Triggered; // EVFILT_USER
        public (ulong Device, ulong Inode) File; // which file the descriptor named when the knote was made
    }

    private sealed class Queue
    {
        public int Top, UserFd;
        public readonly Dictionary<short, int> Inner = new();
        public readonly Dictionary<(ulong, short), Knote> Knotes = new();
    }

    private readonly object _gate = new();
    private readonly Dictionary<int, Queue> _queues = new();

    /// <summary>A model of <paramref name="abi"/>'s kqueue, for a backend configured with <paramref name="backendTable"/>
    /// (the backend's own table for that OS: the model hands it over and never reads a number from it).</summary>
    public KqueueModel(KqueueAbi abi, KqueueProfile backendTable)
    {
        Abi = abi;
        Profile = backendTable;
        Os = new ModelOsCalls(abi.Os);
    }

    /// <summary>The OS this model plays, in the model's own numbers.</summary>
    public KqueueAbi Abi { get; }

    /// <summary>The backend's table for the OS played (what the backend is told it runs on).</summary>
    public KqueueProfile Profile { get; }

    /// <inheritdoc />
    public OsCalls Os { get; }

    private (int Enoent, int Eintr, int Ebadf, int Einval, int Enotconn, int Etime, int Ebadfd, int Enotty, int Enoprotoopt, int Enotsock) E => Abi.Os.Errnos;

    /// <summary>Changes the modelled kernel refused for a reason other than a closed descriptor or a missing knote
    /// (an unknown filter, above all): "OS: filter flags fd: errno".
    /// The conformance suite over the models requires this to stay empty.</summary>
    public static System.Collections.Concurrent.ConcurrentQueue<string> Refused { get; } = new();

    private IEnumerable<short> FdFilters => Abi.Except is { } except ? [Abi.Read, Abi.Write, except] : [Abi.Read, Abi.Write];

    /// <inheritdoc />
    public int Create()
    {
        var q = new Queue { Top = epoll_create1(0x80000), UserFd = eventfd(0, 0x80000 | 0x800) };
        foreach (var filter in FdFilters)
            q.Inner[filter] = NewInner(q);
        Ctl(q.Top, 1, q.UserFd, EPOLLIN, 0);
        lock (_gate)
            _queues[q.Top] = q;
        return q.Top;
    }

    private static int NewInner(Queue q)
    {
        int inner = epoll_create1(0x80000);
        Ctl(q.Top, 1, inner, EPOLLIN, (ulong)inner);
        return inner;
    }

    private static int Ctl(int epfd, int op, int fd, uint events, ulong data)
    {
        var ev = new EpollEvent { Events = events, Data = data };
        return epoll_ctl(epfd, op, fd, &ev) == 0 ? 0 : Marshal.GetLastPInvokeError(); // Linux's numbers (epoll underneath)
    }

    /// <inheritdoc />
    public int Kevent(int kq, ReadOnlySpan<KEvent> changes, Span<KEvent> events, TimeSpan? timeout)
    {
        Queue q;
        int written = 0;
        lock (_gate)
        {
            if (!_queues.TryGetValue(kq, out q!))
                return -E.Ebadf;
            foreach (var change in changes)
            {
                int errno = Apply(q, change);
                // ENOENT (no such knote) and EBADF (the caller's descriptor is closed) are about the caller's
                // descriptors; anything else means the backend sent a change this OS does not take.
                if (errno != 0 && errno != E.Enoent && errno != E.Ebadf)
                    Refused.Enqueue($"{Abi.Name}: filter {change.Filter} flags 0x{change.Flags:x} fd {change.Ident}: errno {errno} ({Abi.Citation})");
                // kevent(2): with EV_RECEIPT, or when a change fails, the change comes back as an EV_ERROR
                // entry with the errno (0 for success) in data; without room for it the call fails instead.
                if ((change.Flags & EV_RECEIPT) != 0 || errno != 0)
                {
                    if (written == events.Length)
                        return -errno;
                    ushort flags = Abi.ErrorKeepsFlags ? (ushort)(change.Flags | EV_ERROR) : EV_ERROR;
                    events[written++] = change with { Flags = flags, Data = errno };
                }
            }
        }
        if (written > 0 || events.IsEmpty)
            return written;
        long deadline = timeout is { } t ? Stopwatch.GetTimestamp() + (long)(t.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        while (true)
        {
            bool sawStale;
            lock (_gate)
                written = Harvest(q, events, out sawStale);
            if (written > 0)
                return written;
            if (sawStale && Abi.CloseKeepsKnotes)
                return 0; // libkqueue: the stale events were dropped and kevent returns nothing, before its timeout
            long left = deadline - Stopwatch.GetTimestamp();
            if (left <= 0)
                return 0;
            int ms = deadline == long.MaxValue ? -1 : (int)Math.Min(int.MaxValue, (left * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency);
            EpollEvent ready;
            if (epoll_wait(q.Top, &ready, 1, ms) < 0 && Marshal.GetLastPInvokeError() == LinuxEintr)
                return -E.Eintr;
        }
    }

    private bool IsFdFilter(short filter) => filter == Abi.Read || filter == Abi.Write || filter == Abi.Except;

    private int Apply(Queue q, KEvent change)
    {
        // The range check comes before anything else, whatever the flags (kqueue_fo_find, kevent_register).
        if (!Abi.InRange(change.Filter))
            return E.Einval;
        bool user = change.Filter == Abi.User;
        if (!user && !IsFdFilter(change.Filter))
            return E.Einval; // in range, but not a filter descriptors attach to (soo_kqfilter, pipe_kqfilter)
        var key = (change.Ident, change.Filter);
        q.Knotes.TryGetValue(key, out var knote);
        if (knote is not null && !user && !Abi.CloseKeepsKnotes && Closed(knote))
        {
            Drop(q, knote); // close(2) removed it; the number may name another file now
            knote = null;
        }
        if (!user && knote is not null && (change.Flags & EV_DELETE) != 0 && Abi.CloseKeepsKnotes
            && LibC.fcntl((int)change.Ident, LinuxF_GETFD, 0) < 0)
        {
            // libkqueue: the knote is freed and the delete succeeds; the epoll entry under the closed number cannot be
            // removed and stays (with a dup alive it keeps firing, and Harvest finds no knote for it).
            q.Knotes.Remove(key);
            return 0;
        }
        if (!user && LibC.fcntl((int)change.Ident, LinuxF_GETFD, 0) < 0)
        {
            // fget() fails before the knote lookup (FreeBSD, OpenBSD, DragonFly: EBADF); xnu looks the knote up
            // first for anything but EV_ADD, and close() removed it: ENOENT.
            if (Abi.DeleteLooksUpKnoteFirst && (change.Flags & EV_ADD) == 0)
                return E.Enoent;
            return E.Ebadf;
        }
        if ((change.Flags & EV_DELETE) != 0)
        {
            if (knote is null)
                return E.Enoent;
            Unwatch(q, knote);
            q.Knotes.Remove(key);
            return 0;
        }
        if ((change.Flags & EV_ADD) != 0)
        {
            // libkqueue: kn_modify fails for an existing read or write knote unless the change has EV_CLEAR (the errno
            // is whatever the failed call left; EINVAL here, recorded as a refusal either way).
            if (knote is not null && !user && Abi.CannotModifyWithoutClear && (change.Flags & EV_CLEAR) == 0)
                return E.Einval;
            if (knote is null)
            {
                knote = q.Knotes[key] = new Knote
                {
                    Ident = change.Ident, Filter = change.Filter, Enabled = true,
                    Flags = (ushort)(change.Flags & (EV_ONESHOT | EV_CLEAR | EV_DISPATCH)),
                    File = user ? default : Identity((int)change.Ident),
                };
            }
            knote.FFlags = change.FFlags & ~NOTE_TRIGGER;
            knote.UData = change.UData;
            knote.Enabled = true;
        }
        else if (knote is null)
        {
            return E.Enoent;
        }
        if ((change.Flags & EV_ENABLE) != 0) knote.Enabled = true;
        if ((change.Flags & EV_DISABLE) != 0) knote.Enabled = false;
        if (user)
        {
            if ((change.FFlags & NOTE_TRIGGER) != 0)
            {
                knote.Triggered = true;
                ulong one = 1;
                LibC.write(q.UserFd, (byte*)&one, 8);
            }
            return 0;
        }
        return knote.Enabled ? Watch(q, knote) : Unwatch(q, knote);
    }

    /// <summary>close(2) drops a descriptor's knotes (knote_fdclose). The model cannot see the close itself, so it
    /// looks whenever it touches a knote: one whose number is closed, or names another file now, was closed.</summary>
    private static bool Closed(Knote knote) => Identity((int)knote.Ident) != knote.File;

    /// <summary>Removes a closed knote. Its epoll entry cannot be removed when a dup keeps the file open (epoll keys
    /// on the closed number), so that filter's inner epoll is then rebuilt without it.</summary>
    private void Drop(Queue q, Knote knote)
    {
        q.Knotes.Remove((knote.Ident, knote.Filter));
        // The DEL names the number, which may belong to another file by now: it fails, and the closed file's entry is
        // either gone with its file (close(2) removed it, as on a real kqueue) or kept by a dup. Only the second needs
        // the inner set rebuilt: a rebuild re-adds every EV_CLEAR knote, and an EPOLLET add reports what is ready, a
        // spurious edge for every other registration that a real kqueue never sends (ContractPropertyTests found it).
        if (knote.InEpoll && Ctl(q.Inner[knote.Filter], 2, (int)knote.Ident, 0, 0) != 0 && HasEntryFor(q.Inner[knote.Filter], (int)knote.Ident))
            RebuildInner(q, knote.Filter);
        knote.InEpoll = false;
    }

    /// <summary>Whether epoll instance <paramref name="epfd"/> still holds an entry under number <paramref name="fd"/>:
    /// /proc/self/fdinfo lists each watched file as "tfd: N events: ...".</summary>
    private static bool HasEntryFor(int epfd, int fd)
    {
        foreach (var line in File.ReadLines($"/proc/self/fdinfo/{epfd}"))
        {
            if (!line.StartsWith("tfd:", StringComparison.Ordinal))
                continue;
            var rest = line.AsSpan(4).TrimStart();
            int end = rest.IndexOf(' ');
            if (int.TryParse(end < 0 ? rest : rest[..end], out int tfd) && tfd == fd)
                return true;
        }
        return false;
    }

    private void RebuildInner(Queue q, short filter)
    {
        int old = q.Inner[filter];
        Ctl(q.Top, 2, old, 0, 0);
        LibC.CloseQuietly(old);
        q.Inner[filter] = NewInner(q);
        foreach (var knote in q.Knotes.Values.Where(k => k.Filter == filter && k.InEpoll).ToList())
        {
            knote.InEpoll = false;
            Watch(q, knote);
        }
    }

    private static (ulong, ulong) Identity(int fd)
    {
        byte* stat = stackalloc byte[256];
        if (DescriptorProbe.Fstat(fd, stat) != 0)
            return (ulong.MaxValue, ulong.MaxValue);
        return (*(ulong*)stat, *(ulong*)(stat + 8)); // Linux x86-64 and the generic layout: st_dev, st_ino first
    }

    private int Watch(Queue q, Knote knote)
    {
        uint events = knote.Filter == Abi.Read ? EPOLLIN | EPOLLRDHUP : knote.Filter == Abi.Write ? EPOLLOUT : EPOLLPRI;
        if ((knote.Flags & EV_CLEAR) != 0) events |= EPOLLET;
        if ((knote.Flags & (EV_ONESHOT | EV_DISPATCH)) != 0) events |= EPOLLONESHOT;
        int inner = q.Inner[knote.Filter];
        int fd = (int)knote.Ident;
        // MOD re-arms a dispatched knote; ENOENT means the inner set no longer has it.
        int errno = knote.InEpoll ? Ctl(inner, 3, fd, events, knote.Ident) : LinuxEnoent;
        if (errno == LinuxEnoent)
            errno = Ctl(inner, 1, fd, events, knote.Ident);
        if (errno == LinuxEexist)
            errno = Ctl(inner, 3, fd, events, knote.Ident);
        knote.InEpoll = errno == 0;
        return errno == 0 ? 0 : Abi.Os.FromLinux(errno);
    }

    private int Unwatch(Queue q, Knote knote)
    {
        if (knote.InEpoll && knote.Filter != Abi.User)
            Ctl(q.Inner[knote.Filter], 2, (int)knote.Ident, 0, 0);
        knote.InEpoll = false;
        return 0;
    }

    /// <summary>Collects what is ready now, without blocking.</summary>
    private int Harvest(Queue q, Span<KEvent> events, out bool sawStale)
    {
        sawStale = false;
        int written = 0;
        ulong counter;
        LibC.read(q.UserFd, (byte*)&counter, 8);
        foreach (var knote in q.Knotes.Values.Where(k => k.Filter == Abi.User && k.Triggered && k.Enabled).ToList())
        {
            if (written == events.Length)
                return written;
            events[written++] = new KEvent { Ident = knote.Ident, Filter = knote.Filter, Flags = knote.Flags, FFlags = knote.FFlags, UData = knote.UData };
            if ((knote.Flags & EV_CLEAR) != 0) knote.Triggered = false;
            AfterDelivery(q, knote);
        }
        // One epoll_wait per filter for everything that still fits: a real kevent fills up to nevents, whichever
        // filters the events come from. (A second epoll_wait on a level-triggered set would repeat entries, so the
        // buffer is as large as what is left rather than a fixed batch.)
        var buffer = new EpollEvent[Math.Max(1, events.Length)];
        fixed (EpollEvent* ready = buffer)
        foreach (var (filter, inner) in q.Inner.ToList())
        {
            if (written == events.Length)
                break;
            int n = epoll_wait(inner, ready, events.Length - written, 0);
            bool stale = false;
            for (int i = 0; i < n && written < events.Length; i++)
            {
                if (!q.Knotes.TryGetValue((ready[i].Data, filter), out var knote))
                {
                    stale = true; // an entry that outlived its knote: would keep the queue readable forever
                    continue;
                }
                if (!Abi.CloseKeepsKnotes && Closed(knote))
                {
                    Drop(q, knote);
                    continue;
                }
                if (!knote.Enabled)
                    continue;
                if (Describe(knote, ready[i].Events) is { } e)
                {
                    events[written++] = e;
                    AfterDelivery(q, knote);
                }
                else if ((knote.Flags & (EV_ONESHOT | EV_DISPATCH)) != 0)
                {
                    Watch(q, knote); // nothing to report after all: keep the one shot for real activity
                }
            }
            // A kernel kqueue has no such entry (close removed it); the model drops it. libkqueue cannot: it stays.
            if (stale && !Abi.CloseKeepsKnotes)
                RebuildInner(q, filter);
            sawStale |= stale;
        }
        return written;
    }

    private void AfterDelivery(Queue q, Knote knote)
    {
        if ((knote.Flags & EV_ONESHOT) != 0)
        {
            Unwatch(q, knote);
            q.Knotes.Remove((knote.Ident, knote.Filter));
        }
        else if ((knote.Flags & EV_DISPATCH) != 0)
        {
            knote.Enabled = false; // EPOLLONESHOT disarmed it in epoll already
        }
    }

    /// <summary>The kevent a ready knote delivers, or null when kqueue would not report it.</summary>
    private KEvent? Describe(Knote knote, uint ready)
    {
        int fd = (int)knote.Ident;
        var e = new KEvent { Ident = knote.Ident, Filter = knote.Filter, Flags = knote.Flags, FFlags = 0, UData = knote.UData };
        bool error = (ready & EPOLLERR) != 0;
        bool isSocket = IsSocket(fd);
        if (knote.Filter == Abi.Read)
        {
            // Linux says POLLHUP for a socket that was never connected; FreeBSD's filt_soread reports nothing
            // for it (no data, and the receive side was never shut). A listening socket is readable (IN).
            if (isSocket && (ready & (EPOLLIN | EPOLLRDHUP)) == 0 && !error && !Connected(fd))
                return null;
            int available = 0;
            LibC.ioctl(fd, TargetAbi.Linux.FionRead, &available);
            e.Data = Math.Max(available, 0);
            if ((ready & (EPOLLRDHUP | EPOLLHUP)) != 0 || error)
                e.Flags |= EV_EOF;
        }
        else if (knote.Filter == Abi.Write)
        {
            // filt_sowrite: a listening socket is never writable; SBS_CANTSENDMORE is checked first (EV_EOF, ready);
            // then a socket whose protocol needs a connection (PR_CONNREQUIRED: TCP, stream and seqpacket AF_UNIX)
            // and has none is not writable; an unconnected UDP socket is. A connection that was reset or closed
            // (soisdisconnected sets SBS_CANTSENDMORE) has no peer any more but is writable with EV_EOF; Linux tells it
            // from a socket that never had a connection by its shut read side (POLLRDHUP).
            bool disconnected = isSocket && !error && !Connected(fd) && ReadSideShut(fd);
            if (isSocket && !error && !disconnected && (IsListening(fd) || (NeedsConnection(fd) && !Connected(fd))))
                return null;
            if ((ready & EPOLLHUP) != 0 || error || disconnected || (isSocket && WriteSideShut(fd)))
                e.Flags |= EV_EOF;
            e.Data = 1;
        }
        else
        {
            e.FFlags = Abi.NoteOob; // NOTE_OOB as this OS numbers it
            e.Data = 1;
        }
        if ((e.Flags & EV_EOF) != 0 && error)
            e.FFlags = 5; // EIO, Version 7's number everywhere
        return e;
    }

    private static bool Connected(int fd)
    {
        byte* address = stackalloc byte[128];
        uint length = 128;
        return LibC.getpeername(fd, address, &length) == 0;
    }

    private static int SocketOption(int fd, int option)
    {
        int value = 0;
        uint length = sizeof(int);
        return LibC.getsockopt(fd, 1 /* SOL_SOCKET */, option, &value, &length) == 0 ? value : -1;
    }

    private static bool NeedsConnection(int fd) => SocketOption(fd, 3 /* SO_TYPE */) is 1 /* SOCK_STREAM */ or 5 /* SOCK_SEQPACKET */;

    private static bool IsListening(int fd) => SocketOption(fd, 30 /* SO_ACCEPTCONN */) == 1;

    private const short POLLRDHUP = 0x2000;

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events, ReturnedEvents;
    }

    [LibraryImport("libc", SetLastError = true)] private static partial int poll(PollFd* fds, nuint count, int timeoutMs);

    // Linux sets RCV_SHUTDOWN (POLLRDHUP) when a connection ends (FIN, RST, local SHUT_RD), never on a socket that
    // was never connected; poll(2) with a zero timeout reads it without consuming data or a pending error.
    private static bool ReadSideShut(int fd)
    {
        var p = new PollFd { Fd = fd, Events = POLLRDHUP };
        return poll(&p, 1, 0) == 1 && (p.ReturnedEvents & POLLRDHUP) != 0;
    }

    // A zero-byte send fails with EPIPE once this side shut writing; it moves no data either way.
    private static bool WriteSideShut(int fd) => send(fd, null, 0, 0x40 | 0x4000) < 0 && Marshal.GetLastPInvokeError() == 32; // MSG_DONTWAIT | MSG_NOSIGNAL; EPIPE

    // Linux's numbers for the calls underneath (include/uapi/asm-generic/errno-base.h, fcntl.h).
    private const int LinuxEnoent = 2, LinuxEintr = 4, LinuxEexist = 17, LinuxF_GETFD = 1;

    private static bool IsSocket(int fd) => TargetAbi.IsLinuxSocket(fd);

    /// <inheritdoc />
    public void Close(int kq)
    {
        lock (_gate)
        {
            if (!_queues.Remove(kq, out var q))
                return;
            foreach (var inner in q.Inner.Values)
                LibC.CloseQuietly(inner);
            LibC.CloseQuietly(q.UserFd);
            LibC.CloseQuietly(q.Top);
        }
    }
}
