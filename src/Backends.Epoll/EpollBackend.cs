using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using IoMux.Interop;
using static IoMux.Backends.Epoll.EpollInterop;

namespace IoMux.Backends.Epoll;

/// <summary>
/// Linux epoll(7). Level, edge (EPOLLET) and oneshot (EPOLLONESHOT) are native; read hangup is EPOLLRDHUP,
/// requested with read interest only (requested without it, a level registration that only writes would be
/// woken forever by a half-closed peer). Timeouts are sub-millisecond through epoll_pwait2 (Linux 5.11,
/// glibc 2.35) where present, milliseconds rounded up otherwise.
/// </summary>
public sealed unsafe class EpollBackend : IPollerBackend
{
    private readonly int _epollFd;
    private readonly EventFdWaker _waker;
    private readonly DescriptorTable _table = new();
    private readonly object _gate = new();
    private readonly BackendCounters _counters = new();
    private readonly bool _hasPwait2;
    private byte[] _nativeEvents = [];   // pinned: _nativeBuffer points into it
    private byte* _nativeBuffer;
    private int _nativeCapacity;
    private bool _disposed;

    /// <summary>Creates an epoll instance and its eventfd wake channel.</summary>
    /// <exception cref="PlatformNotSupportedException">Not Linux.</exception>
    /// <exception cref="PosixException">epoll_create1 or eventfd failed (EMFILE, ENOMEM ...).</exception>
    public EpollBackend() : this(allowPwait2: true) { }

    /// <summary>Creates the backend; <paramref name="allowPwait2"/> false forces millisecond epoll_wait
    /// (for tests and benchmarks of the fallback path).</summary>
    public EpollBackend(bool allowPwait2)
    {
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException("epoll exists on Linux only.");
        _epollFd = epoll_create1(EPOLL_CLOEXEC);
        if (_epollFd < 0)
            throw Errno.Fail("epoll_create1");
        try
        {
            _waker = new EventFdWaker(_epollFd, _counters);
        }
        catch
        {
            LibC.CloseQuietly(_epollFd);
            throw;
        }
        _hasPwait2 = allowPwait2 && ProbePwait2();
        Capabilities = new BackendCapabilities(BackendKind.Epoll, "epoll",
            NativeEdge: true, NativeOneshot: true, NativeReadHangup: true,
            TimeoutResolution: _hasPwait2 ? TimeSpan.FromTicks(1) : TimeSpan.FromMilliseconds(1),
            MaxDescriptor: int.MaxValue);
    }

    /// <inheritdoc />
    public BackendCapabilities Capabilities { get; }

    /// <inheritdoc />
    public BackendCounters Counters => _counters;

    /// <summary>True when epoll_pwait2 is used for nanosecond timeouts.</summary>
    public bool UsesPwait2 => _hasPwait2;

    private bool ProbePwait2()
    {
        byte* buffer = stackalloc byte[16];
        var zero = default(Timespec);
        try
        {
            return epoll_pwait2(_epollFd, buffer, 1, &zero, null) >= 0 || Errno.Last != Errno.ENOSYS;
        }
        catch (EntryPointNotFoundException)
        {
            return false; // glibc older than 2.35
        }
    }

    private static uint KernelMask(Interest interest, TriggerMode mode)
    {
        uint mask = 0;
        // EPOLLEXCLUSIVE admits only IN, OUT, ERR, HUP, WAKEUP and ET beside it (EINVAL otherwise): no EPOLLRDHUP.
        bool exclusive = (interest & Interest.Exclusive) != 0;
        if ((interest & Interest.Readable) != 0) mask |= exclusive ? EPOLLIN : EPOLLIN | EPOLLRDHUP;
        if ((interest & Interest.Writable) != 0) mask |= EPOLLOUT;
        if ((interest & Interest.Priority) != 0) mask |= EPOLLPRI;
        if ((interest & Interest.Exclusive) != 0) mask |= EPOLLEXCLUSIVE;
        return mode switch
        {
            TriggerMode.Edge => mask | EPOLLET,
            TriggerMode.Oneshot => mask | EPOLLONESHOT,
            _ => mask,
        };
    }

    /// <inheritdoc />
    public void Add(int fd, ulong token, Interest interest, TriggerMode mode)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var entry = _table.Add(fd, token, interest, mode);
            if (Control(EPOLL_CTL_ADD, fd, KernelMask(interest, mode), entry.KernelData) != 0)
            {
                int errno = Errno.Last;
                _table.Remove(entry);
                if (errno == Errno.EPERM)
                {
                    // epoll refuses descriptors without a poll method: regular files and directories.
                    DescriptorProbe.RequireWaitable(fd, "epoll_ctl(ADD)");
                    throw new UnsupportedDescriptorException(fd, "descriptor without readiness support");
                }
                throw new PosixException("epoll_ctl(ADD)", errno, $"fd {fd}");
            }
        }
    }

    /// <inheritdoc />
    public void Modify(int fd, ulong token, Interest interest, TriggerMode mode)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var entry = _table.Get(fd);
            if (((interest | entry.Interest) & Interest.Exclusive) != 0)
                throw new NotSupportedException($"fd {fd}: an exclusive (EPOLLEXCLUSIVE) registration cannot be modified; deregister and register it again.");
            if (Control(EPOLL_CTL_MOD, fd, KernelMask(interest, mode), entry.KernelData) != 0)
                throw Errno.Fail("epoll_ctl(MOD)", $"fd {fd}");
            _table.Update(entry, token, interest, mode);
        }
    }

    /// <inheritdoc />
    public void Delete(int fd)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var entry = _table.Get(fd);
            _table.Remove(entry);
            // Deleting before close matters: epoll tracks file descriptions, so a dup of the descriptor
            // would keep the registration alive after close(). EBADF (already closed) and ENOENT (closed and
            // the number reused) mean the kernel has nothing left under this number: not an error.
            if (Control(EPOLL_CTL_DEL, fd, 0, 0) != 0)
            {
                int errno = Errno.Last;
                if (errno != Errno.EBADF && errno != Errno.ENOENT)
                    throw new PosixException("epoll_ctl(DEL)", errno, $"fd {fd}");
            }
        }
    }

    /// <inheritdoc />
    public void Rearm(int fd, Interest directions)
    {
        // Native edge mode re-arms itself when new readiness arrives.
    }

    private int Control(int op, int fd, uint mask, ulong data)
    {
        byte* ev = stackalloc byte[16];
        WriteEvent(ev, mask, data);
        return epoll_ctl(_epollFd, op, fd, ev);
    }

    /// <inheritdoc />
    public int Wait(Span<PollEvent> events, TimeSpan timeout)
    {
        var deadline = WaitDeadline.Start(timeout);
        int capacity = Math.Min(events.Length, 1 << 16);
        if (capacity > _nativeCapacity)
            GrowBuffer(capacity);
        byte* buffer = _nativeBuffer;
        while (true)
        {
            var slice = _waker.Gate.BeginWait(deadline);
            int n = KernelWait(buffer, capacity, slice);
            int errno = n < 0 ? Errno.Last : 0;
            bool woken = _waker.Gate.EndWait(deadline);
            if (n < 0)
            {
                if (errno != Errno.EINTR)
                    throw new PosixException(_hasPwait2 ? "epoll_pwait2" : "epoll_wait", errno);
                _counters.OnInterrupted();
                if (woken)
                    return 0;
                continue; // resume with the time left
            }
            int written = Translate(buffer, n, events);
            // Only the wake channel fired, with no wake requested: a write that raced with the end of the
            // previous wait. Keep waiting.
            if (written > 0 || woken || deadline.HasPassed)
                return written;
        }
    }

    private int KernelWait(byte* buffer, int capacity, TimeSpan slice)
    {
        _counters.OnKernelWait();
        if (_hasPwait2 && slice != Timeout.InfiniteTimeSpan && slice != TimeSpan.Zero)
        {
            var ts = Timespec.From(slice);
            return epoll_pwait2(_epollFd, buffer, capacity, &ts, null);
        }
        return epoll_wait(_epollFd, buffer, capacity, WaitDeadline.ToMillisecondsRoundedUp(slice));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Translate(byte* buffer, int count, Span<PollEvent> events)
    {
        // count <= events.Length (the kernel got at most that many slots), so the writes below stay in bounds.
        ref PollEvent output = ref MemoryMarshal.GetReference(events);
        int written = 0;
        int size = EventSize;
        var states = _table.States;
        for (int i = 0; i < count; i++)
        {
            byte* slot = buffer + i * size;
            ref readonly var state = ref DescriptorTable.LiveState(states, ReadData(slot));
            if (Unsafe.IsNullRef(in state))
                continue; // the wake channel (WakeData never resolves), or an entry deleted during this wait
            uint m = ReadEvents(slot);
            var readiness = ReadinessRules.Normalize(state.Interest,
                input: (m & EPOLLIN) != 0, output: (m & EPOLLOUT) != 0, priority: (m & EPOLLPRI) != 0,
                error: (m & EPOLLERR) != 0, hangup: (m & EPOLLHUP) != 0, readHangup: (m & EPOLLRDHUP) != 0);
            if (readiness != Readiness.None)
                Unsafe.Add(ref output, written++) = new PollEvent(state.Token, readiness);
        }
        return written;
    }

    private void GrowBuffer(int capacity)
    {
        _nativeEvents = GC.AllocateUninitializedArray<byte>(capacity * EventSize, pinned: true);
        _nativeBuffer = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_nativeEvents));
        _nativeCapacity = capacity;
    }

    /// <inheritdoc />
    public void Wake() => _waker.Wake();

    /// <summary>Closes the epoll instance and the eventfd. Registered descriptors stay open (they are the caller's).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
        }
        _waker.Dispose();
        LibC.CloseQuietly(_epollFd);
    }
}
