using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Backends.Poll;

/// <summary>
/// What poll(2) and select(2) share: both take the whole set on every call, so registrations live in a
/// table, the kernel set is rebuilt from it only when something changed, and edge and oneshot modes are
/// emulated by leaving reported directions out of the set (no busy loop: a disarmed direction is not
/// watched at all until the consumer hits would-block, or until Modify for oneshot). A change made by another
/// thread while the waiter is inside the kernel nudges it through the wake pipe, so the change takes effect
/// in that same wait.
/// </summary>
public abstract unsafe class PollSetBackend : IPollerBackend, IKernelWait, IOwnedRegistrations, ICoreBackend
{
    private readonly BackendCore _core = new();

    BackendCore ICoreBackend.Core => _core;
    private readonly WakePipe _pipe = new();
    private DescriptorEntry[] _watched = new DescriptorEntry[16];
    private int _watchedCount;
    private int _scanStart;
    private bool _dirty = true;
    private bool _waiterInKernel;
    private int _nudgePending;

    /// <summary>Creates the backend's wake pipe.</summary>
    protected PollSetBackend()
    {
    }

    /// <inheritdoc />
    public abstract BackendCapabilities Capabilities { get; }

    /// <inheritdoc />
    public BackendCounters Counters => _core.Counters;

    /// <summary>The read end of the wake pipe, which every kernel set must watch for readability.</summary>
    private protected int WakeDescriptor => _pipe.ReadEnd;

    /// <summary>True when hangups must be derived (the kernel does not report POLLRDHUP).</summary>
    private protected abstract bool DerivesReadHangup { get; }

    /// <summary>Refuses descriptors the kernel call cannot represent (select: FD_SETSIZE).</summary>
    private protected virtual void CheckDescriptor(int fd) { }

    /// <summary>Builds the kernel's set from the entries that are armed (called under the lock, only after a change).</summary>
    private protected abstract void BuildKernelSet(ReadOnlySpan<DescriptorEntry> watched);

    /// <summary>One kernel call; returns its result (-1 with errno set on failure).</summary>
    private protected abstract int KernelWait(TimeSpan slice);

    /// <summary>Whether the last kernel call reported the wake pipe readable.</summary>
    private protected abstract bool WakeFired();

    /// <summary>The last kernel call's report for watched entry <paramref name="index"/>.</summary>
    private protected abstract void Report(int index, out bool input, out bool output, out bool priority, out bool error, out bool hangup, out bool readHangup, out bool invalid);

    /// <inheritdoc />
    public void Add(int fd, ulong token, Interest interest, TriggerMode mode)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        CheckDescriptor(fd);
        lock (_core.Gate)
        {
            _core.ThrowIfDisposed(this);
            _core.Table.AddChecked(fd, token, interest, mode, Capabilities.Name);
            Changed();
        }
    }

    /// <inheritdoc />
    public void Modify(int fd, ulong token, Interest interest, TriggerMode mode)
    {
        lock (_core.Gate)
        {
            _core.ThrowIfDisposed(this);
            var entry = _core.Table.Get(fd);
            _core.Table.Update(entry, token, interest, mode);
            entry.Orphaned = false; // a modify proves the number is the caller's again
            Changed();
        }
    }

    /// <inheritdoc />
    public void Delete(int fd)
    {
        lock (_core.Gate)
        {
            _core.ThrowIfDisposed(this);
            _core.Table.Remove(_core.Table.Get(fd)); // nothing to tell the kernel: it only knows the set we pass it
            Changed();
        }
    }

    /// <inheritdoc />
    public void Rearm(int fd, Interest directions)
    {
        lock (_core.Gate)
        {
            if (!_core.IsDisposed && _core.Table.TryRearm(fd, directions) is { Orphaned: false })
                Changed();
        }
    }

    void IOwnedRegistrations.SetOwner(int fd, SafeHandle owner)
    {
        lock (_core.Gate)
            _core.Table.SetOwner(fd, owner);
    }

    private void Changed()
    {
        _dirty = true;
        // A waiter inside poll/select only sees the set it passed: nudge it through the wake pipe so the change
        // takes effect in this wait. The nudge is not the caller's wake: the loop keeps waiting after it.
        if (_waiterInKernel && Interlocked.Exchange(ref _nudgePending, 1) == 0)
            _pipe.Write();
    }

    /// <inheritdoc />
    public int Wait(Span<PollEvent> events, TimeSpan timeout) => _core.Wait(this, events, timeout);

    string IKernelWait.KernelCallName => Capabilities.Name;

    void IKernelWait.BeforeWait()
    {
        lock (_core.Gate)
        {
            _core.ThrowIfDisposed(this);
            if (_dirty)
                Rebuild();
            _waiterInKernel = true; // under the lock: a change made after this point nudges us
        }
    }

    int IKernelWait.KernelWait(int capacity, TimeSpan slice, out int errno)
    {
        int rc = KernelWait(slice);
        errno = rc < 0 ? Errno.Last : 0;
        if (errno == Errno.EBADF)
        {
            // select(2) fails the whole call when one descriptor of the set was closed without being
            // deregistered (poll marks just that one POLLNVAL). Do what poll does: stop watching the closed
            // ones and wait again, so one misuse reads the same on every backend.
            lock (_core.Gate)
                StopWatchingClosed();
            errno = 0;
            rc = 0;
        }
        if (rc <= 0)
        {
            lock (_core.Gate)
                _waiterInKernel = false; // no Translate follows to clear it
        }
        return Math.Max(rc, 0);
    }

    private void StopWatchingClosed()
    {
        for (int i = 0; i < _watchedCount; i++)
        {
            var entry = _watched[i];
            if (!entry.Removed && LibC.fcntl(entry.Descriptor, LibC.F_GETFD, 0) < 0)
                Orphan(entry);
        }
    }

    private void Orphan(DescriptorEntry entry)
    {
        if (entry.Orphaned)
            return;
        entry.Orphaned = true;
        entry.Armed = Interest.None;
        _dirty = true;
        _core.Counters.OnOrphaned(entry.Descriptor);
    }

    int IKernelWait.Translate(int count, Span<PollEvent> events)
    {
        lock (_core.Gate)
        {
            _waiterInKernel = false;
            if (WakeFired())
            {
                Volatile.Write(ref _nudgePending, 0);
                _pipe.Drain();
            }
            return Collect(events);
        }
    }

    private void Rebuild()
    {
        if (_watched.Length < _core.Table.Count)
            _watched = new DescriptorEntry[Math.Max(_core.Table.Count, _watched.Length * 2)];
        _watchedCount = 0;
        foreach (var entry in _core.Table.Live) // a struct enumerator: no allocation
        {
            if (entry.Armed != Interest.None)
                _watched[_watchedCount++] = entry;
        }
        BuildKernelSet(_watched.AsSpan(0, _watchedCount));
        _dirty = false;
    }

    private int Collect(Span<PollEvent> events)
    {
        int written = 0;
        bool derive = DerivesReadHangup;
        // When more descriptors are ready than the caller has room for, start the next scan where this one
        // stopped, so that the ones at the end of the set are not starved.
        int count = _watchedCount;
        int start = count == 0 ? 0 : _scanStart % count;
        for (int n = 0; n < count && written < events.Length; n++)
        {
            int i = start + n < count ? start + n : start + n - count;
            _scanStart = i + 1;
            var entry = _watched[i];
            Report(i, out bool input, out bool output, out bool priority, out bool error, out bool hangup, out bool readHangup, out bool invalid);
            if (entry.Removed || entry.Orphaned || !(input | output | priority | error | hangup | readHangup | invalid))
                continue;
            if (invalid || entry.Owner is { IsClosed: true })
            {
                // POLLNVAL: the raw descriptor was closed without deregistering; or the registered handle was
                // closed (its number may already name another file). epoll forgets closed descriptors silently;
                // do the same rather than spin on it, or report another file's readiness under this token.
                Orphan(entry);
                continue;
            }
            var armed = entry.Armed; // may have shrunk since the set was built
            if (derive)
                HangupDerivation.DeriveIfReadable(_core.Table.Os, entry, armed, input, ref hangup, ref readHangup);
            if (HangupDerivation.IsLoneHangup(input, output, error, hangup, readHangup))
                HangupDerivation.ExplainLoneHangup(_core.Table.Os, entry.Descriptor, ref input, ref hangup);
            var readiness = ReadinessRules.Normalize(armed, input, output, priority, error, hangup, readHangup);
            if (readiness == Readiness.None)
                continue;
            events[written++] = new PollEvent(entry.Token, readiness);
            if (entry.DisarmReported(readiness))
                _dirty = true; // the set changes: rebuilt before the next kernel call
        }
        return written;
    }

    /// <inheritdoc />
    public void Wake() => _core.Wake(this);

    void IKernelWait.WriteWake() => _pipe.Write();

    /// <summary>Closes the wake pipe; registered descriptors stay open (they are the caller's).</summary>
    public void Dispose()
    {
        if (_core.BeginDispose())
            _pipe.Dispose();
    }
}
