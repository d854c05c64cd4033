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
public abstract unsafe class PollSetBackend : IPollerBackend
{
    private readonly object _gate = new();
    private readonly DescriptorTable _table = new();
    private readonly PipeWaker _waker;
    private readonly BackendCounters _counters = new();
    private DescriptorEntry[] _watched = new DescriptorEntry[16];
    private int _watchedCount;
    private int _scanStart;
    private bool _dirty = true;
    private bool _waiterInKernel;
    private bool _disposed;

    /// <summary>Creates the wake pipe.</summary>
    protected PollSetBackend() => _waker = new PipeWaker(_counters);

    /// <inheritdoc />
    public abstract BackendCapabilities Capabilities { get; }

    /// <inheritdoc />
    public BackendCounters Counters => _counters;

    /// <summary>The read end of the wake pipe, which every kernel set must watch for readability.</summary>
    private protected int WakeDescriptor => _waker.ReadEnd;

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
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _table.AddChecked(fd, token, interest, mode, Capabilities.Name);
            Changed();
        }
    }

    /// <inheritdoc />
    public void Modify(int fd, ulong token, Interest interest, TriggerMode mode)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _table.Update(_table.Get(fd), token, interest, mode);
            Changed();
        }
    }

    /// <inheritdoc />
    public void Delete(int fd)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _table.Remove(_table.Get(fd)); // nothing to tell the kernel: it only knows the set we pass it
            Changed();
        }
    }

    /// <inheritdoc />
    public void Rearm(int fd, Interest directions)
    {
        lock (_gate)
        {
            if (!_disposed && _table.TryRearm(fd, directions) is not null)
                Changed();
        }
    }

    private void Changed()
    {
        _dirty = true;
        if (_waiterInKernel)
            _waker.Nudge();
    }

    /// <inheritdoc />
    public int Wait(Span<PollEvent> events, TimeSpan timeout)
    {
        var deadline = WaitDeadline.Start(timeout);
        while (true)
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_dirty)
                    Rebuild();
                _waiterInKernel = true; // under the lock: a change made after this point nudges us
            }
            var slice = _waker.Gate.BeginWait(deadline);
            _counters.OnKernelWait();
            int rc = KernelWait(slice);
            int errno = rc < 0 ? Errno.Last : 0;
            bool woken = _waker.Gate.EndWait(deadline);
            int written = 0;
            lock (_gate)
            {
                _waiterInKernel = false;
                if (rc < 0 && errno != Errno.EINTR)
                    throw new PosixException(Capabilities.Name, errno);
                if (rc > 0)
                {
                    if (WakeFired())
                        _waker.Drain();
                    written = Collect(events);
                }
            }
            if (rc < 0)
            {
                _counters.OnInterrupted();
                if (woken)
                    return 0;
                continue; // EINTR: resume with the time left
            }
            // A nudge (registrations changed) or a stale wake byte is not the caller's wake: keep waiting.
            if (written > 0 || woken || deadline.HasPassed)
                return written;
        }
    }

    private void Rebuild()
    {
        if (_watched.Length < _table.Count)
            _watched = new DescriptorEntry[Math.Max(_table.Count, _watched.Length * 2)];
        _watchedCount = 0;
        foreach (var entry in _table.Live) // a struct enumerator: no allocation
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
            if (entry.Removed || !(input | output | priority | error | hangup | readHangup | invalid))
                continue;
            if (invalid)
            {
                // POLLNVAL: the raw descriptor was closed without deregistering. epoll forgets closed
                // descriptors silently; do the same rather than spin on it.
                entry.Armed = Interest.None;
                _dirty = true;
                continue;
            }
            var armed = entry.Armed; // may have shrunk since the set was built
            if (derive)
                HangupDerivation.DeriveIfReadable(entry, armed, input, ref hangup, ref readHangup);
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
    public void Wake() => _waker.Wake();

    /// <summary>Closes the wake pipe; registered descriptors stay open (they are the caller's).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
        }
        _waker.Dispose();
    }
}
