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
internal sealed unsafe class EpollBackend : PollerBackend
{
    /// <summary>The epoll instance is itself readable while a wait would find events, so a loop on it can be
    /// embedded in another loop (sd_event_get_fd).</summary>
    internal override int PollDescriptor => _epollFd;

    private readonly int _epollFd;
    private readonly EventFdWaker _waker;
    private readonly bool _hasPwait2;
    private byte[] _nativeEvents = [];   // pinned: _nativeBuffer points into it
    private byte* _nativeBuffer;
    private int _nativeCapacity;
    // Misuse recovery (closed before deregistered while a dup or a child process keeps the file open): epoll
    // keeps such a registration, keyed by a file and a number that is gone, and no epoll_ctl can reach it. Its
    // events resolve to no live entry. Set when a deletion found the number closed or reused (the registration
    // may survive) and cleared by rebuilding the kernel set.
    private bool _mayHoldStale;
    private int _staleRounds;            // consecutive kernel waits that returned stale events
    private bool _sawStale;
    // The wait path's view of each table slot (DescriptorEntry.Slot), epoll's own: its translation runs without the
    // lock and reads these structs instead of the entries. Written under the lock; grown by replacing the array.
    private SlotState[] _states = new SlotState[16];

    /// <summary>Creates an epoll instance and its eventfd wake channel.</summary>
    /// <exception cref="PlatformNotSupportedException">Not Linux.</exception>
    /// <exception cref="PosixException">epoll_create1 or eventfd failed (EMFILE, ENOMEM ...).</exception>
    public EpollBackend() : this(allowPwait2: true) { }

    /// <summary>Creates the backend; <paramref name="allowPwait2"/> false forces millisecond epoll_wait
    /// (for tests and benchmarks of the fallback path).</summary>
    public EpollBackend(bool allowPwait2) : base(WaitLocking.None, probe: null)
    {
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException("epoll exists on Linux only.");
        _epollFd = epoll_create1(EPOLL_CLOEXEC);
        if (_epollFd < 0)
            throw Errno.Fail("epoll_create1");
        try
        {
            _waker = new EventFdWaker(_epollFd);
        }
        catch
        {
            LibC.CloseQuietly(_epollFd);
            throw;
        }
        _hasPwait2 = allowPwait2 && ProbePwait2();
        Capabilities = new BackendCapabilities
        {
            Kind = BackendKind.Epoll,
            Name = "epoll",
            NativeEdge = true,
            NativeOneshot = true,
            NativeReadHangup = true,
            TimeoutResolution = _hasPwait2 ? TimeSpan.FromTicks(1) : TimeSpan.FromMilliseconds(1),
            MaxDescriptor = int.MaxValue,
            NativePriority = true,
        };
    }

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
        // EPOLLERR and EPOLLHUP cannot be masked (epoll_ctl(2): "epoll_wait will always wait for this event").
        // A paused registration is therefore a disarmed oneshot: it may fire once more, which translates to
        // nothing, and is then silent until Modify gives it interest again (a level EPOLLHUP would otherwise
        // wake every wait at once: a busy loop the caller cannot see).
        if ((interest & (Interest.Readable | Interest.Writable | Interest.Priority)) == 0)
            return EPOLLONESHOT;
        uint mask = 0;
        // EPOLLEXCLUSIVE admits only IN, OUT, ERR, HUP, WAKEUP and ET beside it (EINVAL otherwise): no EPOLLRDHUP.
        bool exclusive = (interest & Interest.Exclusive) != 0;
        if ((interest & Interest.Readable) != 0) mask |= exclusive ? EPOLLIN : EPOLLIN | EPOLLRDHUP;
        if ((interest & Interest.Writable) != 0) mask |= EPOLLOUT;
        if ((interest & Interest.Priority) != 0) mask |= EPOLLPRI;
        if (exclusive) mask |= EPOLLEXCLUSIVE;
        return mode switch
        {
            TriggerMode.Edge => mask | EPOLLET,
            TriggerMode.Oneshot => mask | EPOLLONESHOT,
            _ => mask,
        };
    }

    /// <summary>Under the lock: publishes the entry's token, interest and handle to the wait path.</summary>
    private void Publish(DescriptorEntry entry)
    {
        var states = _states;
        if (entry.Slot >= states.Length)
        {
            var grown = new SlotState[Math.Max(entry.Slot + 1, states.Length * 2)];
            Array.Copy(states, grown, states.Length);
            Volatile.Write(ref _states, grown);
            states = grown;
        }
        states[entry.Slot] = new SlotState { Token = entry.Token, Generation = entry.Generation, Interest = entry.Interest, Live = true, Descriptor = entry.Descriptor, Owner = entry.Owner };
    }

    /// <summary>Under the lock: the wait path drops the slot's events from now on.</summary>
    private void Retract(DescriptorEntry entry)
    {
        _states[entry.Slot].Live = false;
        _states[entry.Slot].Owner = null;
    }

    private protected override void Watch(DescriptorEntry entry)
    {
        Publish(entry); // before the kernel call: a waiter may get the entry's first event at once
        try
        {
            AddToKernel(entry);
        }
        catch
        {
            Retract(entry);
            throw;
        }
    }

    private void AddToKernel(DescriptorEntry entry)
    {
        int fd = entry.Descriptor;
        int errno = Control(EPOLL_CTL_ADD, fd, KernelMask(entry.Interest, entry.Mode), entry.KernelData);
        if (errno == Errno.EEXIST)
        {
            // The kernel still holds a registration for this file under this number although the table has
            // none: the number was closed before it was deregistered while a dup kept the file open, and
            // dup2 brought the same file back. Take that registration over (libevent's epoll.c retries
            // ADD as MOD for the same reason).
            errno = Control(EPOLL_CTL_MOD, fd, KernelMask(entry.Interest, entry.Mode), entry.KernelData);
        }
        if (errno == Errno.EPERM)
        {
            // epoll refuses descriptors without a poll method: regular files and directories.
            OsCalls.Native.RequireWaitable(fd, "epoll_ctl(ADD)");
            throw new UnsupportedDescriptorException(fd, "descriptor without readiness support");
        }
        if (errno != 0)
            throw new PosixException("epoll_ctl(ADD)", errno, $"fd {fd}");
    }

    private protected override void Rewatch(DescriptorEntry entry, ulong token, Interest interest, TriggerMode mode)
    {
        int fd = entry.Descriptor;
        if (((interest | entry.Interest) & Interest.Exclusive) != 0)
            throw new NotSupportedException($"fd {fd}: an exclusive (EPOLLEXCLUSIVE) registration cannot be modified; deregister and register it again.");
        int errno = Control(EPOLL_CTL_MOD, fd, KernelMask(interest, mode), entry.KernelData);
        if (errno != 0)
            throw new PosixException("epoll_ctl(MOD)", errno, $"fd {fd}");
        Table.Update(entry, token, interest, mode);
        Publish(entry);
    }

    /// <remarks>Closing: close() removes the descriptor from every epoll set once no other descriptor refers to its
    /// open file description (epoll(7), "Questions and answers", Q6), so epoll_ctl is not called. Should a dup exist
    /// after all, its events carry a dropped generation: the wait path sweeps such a registration away by rebuilding
    /// the kernel set (F11b), which _mayHoldStale allows.</remarks>
    private protected override void Unwatch(DescriptorEntry entry, Removal why)
    {
        if (why != Removal.Closed)
            Retract(entry); // a closed entry stays published: its events are dropped as HandleClosed
        if (why == Removal.Closing)
        {
            _mayHoldStale = true;
            return;
        }
        // Deleting before close matters: epoll tracks file descriptions, so a dup of the descriptor
        // would keep the registration alive after close(). EBADF (already closed) and ENOENT (closed and
        // the number reused) mean the kernel has nothing of ours under this number any more: not an error, but
        // the old registration may live on through a dup, which the wait path then sweeps away.
        // EPERM: the number was closed and now names a file epoll cannot watch (a regular file); it was never
        // ours, as epoll refuses those at ADD (a registered handle closed under its registration, F1b).
        // A closed entry found on the wait path: any failure leaves the rest to the rebuild.
        int errno = entry.Closed && why == Removal.Delete ? Errno.ENOENT : Control(EPOLL_CTL_DEL, entry.Descriptor, 0, 0);
        if (errno == Errno.EBADF || errno == Errno.ENOENT || errno == Errno.EPERM || (errno != 0 && why == Removal.Closed))
            _mayHoldStale = true;
        else if (errno != 0)
            throw new PosixException("epoll_ctl(DEL)", errno, $"fd {entry.Descriptor}");
    }

    private int Control(int op, int fd, uint mask, ulong data)
    {
        byte* ev = stackalloc byte[16];
        WriteEvent(ev, mask, data);
        return epoll_ctl(_epollFd, op, fd, ev) == 0 ? 0 : Errno.Last;
    }

    private protected override string KernelCallName => _hasPwait2 ? "epoll_pwait2" : "epoll_wait";

    /// <summary>Requested after a wait that saw a stale event: a registration that outlived its number fires on
    /// every wait (level) and can only be removed by replacing the kernel set. Two stale rounds in a row tell it
    /// from the one stale event of a registration deleted during a wait.</summary>
    private protected override void PrepareWait()
    {
        PrepareRequested = false;
        if (_mayHoldStale && ++_staleRounds >= 2)
            RebuildKernelSet();
    }

    /// <summary>Replaces the kernel set with a fresh one holding the live registrations only, under the same
    /// descriptor number (dup3), so that registrations keyed by closed numbers are dropped with the old set.</summary>
    private void RebuildKernelSet()
    {
        int fresh = epoll_create1(EPOLL_CLOEXEC);
        if (fresh < 0)
            return; // EMFILE: try again at the next stale round
        bool ok = ControlOn(fresh, EPOLL_CTL_ADD, _waker.Descriptor, EPOLLIN | EPOLLET, DescriptorTable.WakeData);
        foreach (var entry in Table.Live)
        {
            if (!entry.Closed && entry.Interest != Interest.None)
                ok &= ControlOn(fresh, EPOLL_CTL_ADD, entry.Descriptor, KernelMask(entry.Interest, entry.Mode), entry.KernelData);
        }
        if (ok && LibC.dup3(fresh, _epollFd, EPOLL_CLOEXEC) == _epollFd)
        {
            _mayHoldStale = false;
            _staleRounds = 0;
            Counters.OnKernelSetRebuilt();
        }
        LibC.CloseQuietly(fresh);
    }

    private static bool ControlOn(int epollFd, int op, int fd, uint mask, ulong data)
    {
        byte* ev = stackalloc byte[16];
        WriteEvent(ev, mask, data);
        return epoll_ctl(epollFd, op, fd, ev) == 0;
    }

    private protected override int KernelWait(int capacity, TimeSpan slice, out int errno)
    {
        if (!_sawStale)
            _staleRounds = 0; // the stale rounds counted by PrepareWait must follow each other
        _sawStale = false;
        capacity = Math.Min(capacity, 1 << 16);
        if (capacity > _nativeCapacity)
            GrowBuffer(capacity);
        int n;
        if (slice == TimeSpan.Zero)
        {
            n = epoll_wait_nonblocking(_epollFd, _nativeBuffer, capacity, 0);
            errno = n < 0 ? Marshal.GetLastSystemError() : 0; // no SetLastError wrapper on this one
        }
        else if (_hasPwait2 && slice != Timeout.InfiniteTimeSpan)
        {
            var ts = Timespec.From(slice);
            n = epoll_pwait2(_epollFd, _nativeBuffer, capacity, &ts, null);
            errno = n < 0 ? Errno.Last : 0;
        }
        else
        {
            n = epoll_wait(_epollFd, _nativeBuffer, capacity, WaitDeadline.ToMillisecondsRoundedUp(slice));
            errno = n < 0 ? Errno.Last : 0;
        }
        return Math.Max(n, 0);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private protected override int Translate(int count, Span<PollEvent> events)
    {
        // count <= events.Length (the kernel got at most that many slots), so the writes below stay in bounds.
        ref PollEvent first = ref MemoryMarshal.GetReference(events);
        byte* buffer = _nativeBuffer;
        int written = 0;
        int size = EventSize;
        var states = Volatile.Read(ref _states); // once per batch
        for (int i = 0; i < count; i++)
        {
            byte* slot = buffer + i * size;
            ulong data = ReadData(slot);
            ref readonly var state = ref SlotState.Find(states, data);
            if (Unsafe.IsNullRef(in state))
            {
                // An entry deleted during this wait, or a registration that outlived its number.
                if (data != DescriptorTable.WakeData)
                    _sawStale = PrepareRequested = true;
                continue;
            }
            if (state.HandleClosed)
            {
                StopWatchingClosed(data); // rare: takes the lock
                continue;
            }
            uint m = ReadEvents(slot);
            bool input = (m & EPOLLIN) != 0, output = (m & EPOLLOUT) != 0, error = (m & EPOLLERR) != 0;
            bool hangup = (m & EPOLLHUP) != 0, readHangup = (m & EPOLLRDHUP) != 0;
            if (HangupDerivation.IsLoneHangup(input, output, error, hangup, readHangup))
                HangupDerivation.ExplainLoneHangup(OsCalls.Native, state.Descriptor, ref input, ref hangup);
            var readiness = ReadinessRules.Normalize(state.Interest, input, output, (m & EPOLLPRI) != 0, error, hangup, readHangup);
            if (readiness != Readiness.None)
                Unsafe.Add(ref first, written++) = new PollEvent(state.Token, readiness);
        }
        return written;
    }

    private void GrowBuffer(int capacity)
    {
        _nativeEvents = GC.AllocateUninitializedArray<byte>(capacity * EventSize, pinned: true);
        _nativeBuffer = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_nativeEvents));
        _nativeCapacity = capacity;
    }

    private protected override void WriteWake() => _waker.Write();

    private protected override void CloseKernel()
    {
        _waker.Dispose();
        LibC.CloseQuietly(_epollFd);
    }
}

/// <summary>What the wait path needs of one slot, kept in one contiguous array so that translating a batch of
/// kernel events touches no per-registration object (measured: the object hop cost several ns per event).</summary>
internal struct SlotState
{
    /// <summary>The token to report.</summary>
    public ulong Token;
    /// <summary>Matches the upper half of the kernel data while the slot's entry is live.</summary>
    public uint Generation;
    /// <summary>What the registration watches.</summary>
    public Interest Interest;
    /// <summary>False once the entry was removed.</summary>
    public bool Live;
    /// <summary>The descriptor number (for the rare checks the wait path makes on one descriptor).</summary>
    public int Descriptor;
    /// <summary>The registered handle, or null for a raw descriptor (see <c>DescriptorEntry.Owner</c>).</summary>
    public SafeHandle? Owner;

    /// <summary>True when the registered handle was closed: the event must not reach the caller.</summary>
    public readonly bool HandleClosed => Owner is { IsClosed: true };

    /// <summary>The live state that <paramref name="kernelData"/> names, or a null reference when it is stale
    /// (test with <c>Unsafe.IsNullRef</c>). A reference, not a copy: this runs once per kernel event.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref readonly SlotState Find(SlotState[] states, ulong kernelData)
    {
        uint slot = (uint)kernelData;
        if (slot < (uint)states.Length)
        {
            ref readonly var state = ref states[slot];
            if (state.Live && state.Generation == (uint)(kernelData >> 32))
                return ref state;
        }
        return ref Unsafe.NullRef<SlotState>();
    }
}
