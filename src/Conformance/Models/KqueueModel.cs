using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Backends.Kqueue;
using IoMux.Interop;
using static IoMux.Backends.Kqueue.Kq;

namespace IoMux.Conformance.Models;

/// <summary>
/// A model of FreeBSD's kqueue on real Linux descriptors, so the kqueue backend runs the whole conformance
/// suite here. Knotes are kept per (ident, filter); each filter's knotes live in their own Linux epoll
/// instance (one descriptor can be watched once per epoll), nested under one top-level epoll that also
/// watches an eventfd for EVFILT_USER triggers. The kqueue flags map onto epoll's: EV_CLEAR is EPOLLET
/// (reported again only on new activity), EV_ONESHOT and EV_DISPATCH are EPOLLONESHOT (the first deletes
/// the knote after delivery, the second only disables it), EV_DISABLE takes the knote out of its epoll,
/// EV_ENABLE puts it back. What a delivered kevent carries follows kqueue(2): EVFILT_READ data = bytes
/// buffered, EV_EOF when the read side is shut (peer FIN, local SHUT_RD, pipe writer gone); EVFILT_WRITE
/// EV_EOF when this side can no longer write (pipe reader gone, reset, or a local shutdown(SHUT_WR)), and
/// no write event for a socket that is not connected; EV_EOF's fflags carries a socket error (the model
/// cannot read which without consuming it, so it says EIO); EV_RECEIPT returns one EV_ERROR entry per
/// change with data = errno or 0. Each behaviour is pinned by KqueueModelTests.
/// </summary>
public sealed unsafe partial class KqueueModel : IKqueueSystem
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
        public ushort Flags;   // EV_ONESHOT / EV_CLEAR / EV_DISPATCH as last added
        public uint FFlags;
        public ulong UData;
        public bool Enabled;
        public bool InEpoll;
        public bool Triggered; // EVFILT_USER
    }

    private sealed class Queue
    {
        public int Top, UserFd;
        public readonly Dictionary<short, int> Inner = new();
        public readonly Dictionary<(ulong, short), Knote> Knotes = new();
    }

    private readonly object _gate = new();
    private readonly Dictionary<int, Queue> _queues = new();

    /// <inheritdoc />
    public KqueueFilters Filters => KqueueFilters.FreeBsd;

    /// <inheritdoc />
    public int Create()
    {
        var q = new Queue { Top = epoll_create1(0x80000), UserFd = eventfd(0, 0x80000 | 0x800) };
        foreach (var filter in new[] { Filters.Read, Filters.Write, Filters.Except })
        {
            int inner = epoll_create1(0x80000);
            q.Inner[filter] = inner;
            Ctl(q.Top, 1, inner, EPOLLIN, 0);
        }
        Ctl(q.Top, 1, q.UserFd, EPOLLIN, 0);
        lock (_gate)
            _queues[q.Top] = q;
        return q.Top;
    }

    private static int Ctl(int epfd, int op, int fd, uint events, ulong data)
    {
        var ev = new EpollEvent { Events = events, Data = data };
        return epoll_ctl(epfd, op, fd, &ev) == 0 ? 0 : Errno.Last;
    }

    /// <inheritdoc />
    public int Kevent(int kq, ReadOnlySpan<KEvent> changes, Span<KEvent> events, TimeSpan? timeout)
    {
        Queue q;
        int written = 0;
        lock (_gate)
        {
            if (!_queues.TryGetValue(kq, out q!))
                return -Errno.EBADF;
            foreach (var change in changes)
            {
                int errno = Apply(q, change);
                // kevent(2): with EV_RECEIPT, or when a change fails, the change comes back as an EV_ERROR
                // entry with the errno (0 for success) in data; without room for it the call fails instead.
                if ((change.Flags & EV_RECEIPT) != 0 || errno != 0)
                {
                    if (written == events.Length)
                        return -errno;
                    events[written++] = change with { Flags = EV_ERROR, Data = errno };
                }
            }
        }
        if (written > 0 || events.IsEmpty)
            return written;
        long deadline = timeout is { } t ? Stopwatch.GetTimestamp() + (long)(t.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        while (true)
        {
            lock (_gate)
                written = Harvest(q, events);
            if (written > 0)
                return written;
            long left = deadline - Stopwatch.GetTimestamp();
            if (left <= 0)
                return 0;
            int ms = deadline == long.MaxValue ? -1 : (int)Math.Min(int.MaxValue, (left * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency);
            EpollEvent ready;
            if (epoll_wait(q.Top, &ready, 1, ms) < 0 && Errno.Last == Errno.EINTR)
                return -Errno.EINTR;
        }
    }

    private int Apply(Queue q, KEvent change)
    {
        var key = (change.Ident, change.Filter);
        q.Knotes.TryGetValue(key, out var knote);
        bool user = change.Filter == Filters.User;
        if (!user && !q.Inner.ContainsKey(change.Filter))
            return Errno.EINVAL;
        if (!user && (change.Flags & (EV_ADD | EV_ENABLE | EV_DELETE)) != 0 && LibC.fcntl((int)change.Ident, LibC.F_GETFD, 0) < 0)
            return Errno.EBADF; // kqueue(2): EBADF, the ident is not a valid descriptor
        if ((change.Flags & EV_DELETE) != 0)
        {
            if (knote is null)
                return Errno.ENOENT;
            Unwatch(q, knote);
            q.Knotes.Remove(key);
            return 0;
        }
        if ((change.Flags & EV_ADD) != 0)
        {
            knote ??= q.Knotes[key] = new Knote { Ident = change.Ident, Filter = change.Filter, Enabled = true };
            knote.Flags = (ushort)(change.Flags & (EV_ONESHOT | EV_CLEAR | EV_DISPATCH));
            knote.FFlags = change.FFlags & ~NOTE_TRIGGER;
            knote.UData = change.UData;
            knote.Enabled = true;
        }
        else if (knote is null)
        {
            return Errno.ENOENT;
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

    private int Watch(Queue q, Knote knote)
    {
        uint events = knote.Filter == Filters.Read ? EPOLLIN | EPOLLRDHUP : knote.Filter == Filters.Write ? EPOLLOUT : EPOLLPRI;
        if ((knote.Flags & EV_CLEAR) != 0) events |= EPOLLET;
        if ((knote.Flags & (EV_ONESHOT | EV_DISPATCH)) != 0) events |= EPOLLONESHOT;
        int inner = q.Inner[knote.Filter];
        int fd = (int)knote.Ident;
        // MOD re-arms a dispatched knote; ENOENT means the number was closed and reused (close removed the old
        // knote's epoll entry), so the knote starts over on the new file.
        int errno = knote.InEpoll ? Ctl(inner, 3, fd, events, knote.Ident) : Errno.ENOENT;
        if (errno == Errno.ENOENT)
            errno = Ctl(inner, 1, fd, events, knote.Ident);
        if (errno == Errno.EEXIST)
            errno = Ctl(inner, 3, fd, events, knote.Ident);
        knote.InEpoll = errno == 0;
        return errno;
    }

    private int Unwatch(Queue q, Knote knote)
    {
        if (knote.InEpoll && knote.Filter != Filters.User)
            Ctl(q.Inner[knote.Filter], 2, (int)knote.Ident, 0, 0);
        knote.InEpoll = false;
        return 0;
    }

    /// <summary>Collects what is ready now, without blocking.</summary>
    private int Harvest(Queue q, Span<KEvent> events)
    {
        int written = 0;
        ulong counter;
        LibC.read(q.UserFd, (byte*)&counter, 8);
        foreach (var knote in q.Knotes.Values.Where(k => k.Filter == Filters.User && k.Triggered && k.Enabled).ToList())
        {
            if (written == events.Length)
                return written;
            events[written++] = new KEvent { Ident = knote.Ident, Filter = knote.Filter, Flags = knote.Flags, FFlags = knote.FFlags, UData = knote.UData };
            if ((knote.Flags & EV_CLEAR) != 0) knote.Triggered = false;
            AfterDelivery(q, knote);
        }
        var ready = stackalloc EpollEvent[64];
        foreach (var (filter, inner) in q.Inner)
        {
            int n = epoll_wait(inner, ready, Math.Min(64, events.Length - written), 0);
            for (int i = 0; i < n && written < events.Length; i++)
            {
                if (!q.Knotes.TryGetValue((ready[i].Data, filter), out var knote) || !knote.Enabled)
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
        bool isSocket = DescriptorProbe.TryGetKind(fd, out var kind) == 0 && kind == DescriptorKind.Socket;
        if (knote.Filter == Filters.Read)
        {
            // Linux says POLLHUP for a socket that was never connected; FreeBSD's filt_soread reports nothing
            // for it (no data, and the receive side was never shut). A listening socket is readable (IN).
            if (isSocket && (ready & (EPOLLIN | EPOLLRDHUP)) == 0 && !error && !Connected(fd))
                return null;
            int available = 0;
            LibC.ioctl(fd, LibC.FIONREAD, &available);
            e.Data = Math.Max(available, 0);
            if ((ready & (EPOLLRDHUP | EPOLLHUP)) != 0 || error)
                e.Flags |= EV_EOF;
        }
        else if (knote.Filter == Filters.Write)
        {
            // FreeBSD's filt_sowrite: a socket that needs a connection and has none is not writable.
            if (isSocket && !error && !Connected(fd))
                return null;
            if ((ready & EPOLLHUP) != 0 || error || (isSocket && WriteSideShut(fd)))
                e.Flags |= EV_EOF;
            e.Data = 1;
        }
        else
        {
            e.FFlags = NOTE_OOB;
            e.Data = 1;
        }
        if ((e.Flags & EV_EOF) != 0 && error)
            e.FFlags = (uint)Errno.EIO;
        return e;
    }

    private static bool Connected(int fd)
    {
        byte* address = stackalloc byte[128];
        uint length = 128;
        return LibC.getpeername(fd, address, &length) == 0;
    }

    // A zero-byte send fails with EPIPE once this side shut writing; it moves no data either way.
    private static bool WriteSideShut(int fd) => send(fd, null, 0, 0x40 | 0x4000) < 0 && Errno.Last == Errno.EPIPE; // MSG_DONTWAIT | MSG_NOSIGNAL

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
