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
internal abstract unsafe class PollSetBackend : PollerBackend
{
    private readonly WakePipe _pipe = new();
    private DescriptorEntry[] _watched = new DescriptorEntry[16];
    private int _watchedCount;
    private int _scanStart;
    private bool _dirty = true;
    private bool _waiterInKernel;
    private bool _sawBadDescriptor;
    private int _nudgePending;

    /// <summary>Creates the backend's wake pipe; <paramref name="name"/> names the kernel call in errors.</summary>
    private protected PollSetBackend(string name) : base(WaitLocking.TranslateAlways, probe: name)
    {
        _name = name;
        PrepareRequested = true; // every wait rebuilds a changed set and tells changes it is in the kernel
    }

    private readonly string _name;

    /// <summary>The read end of the wake pipe, which every kernel set must watch for readability.</summary>
    private protected int WakeDescriptor => _pipe.ReadEnd;

    /// <summary>True when hangups must be derived (the kernel does not report POLLRDHUP).</summary>
    private protected abstract bool DerivesReadHangup { get; }

    /// <summary>Builds the kernel's set from the entries that are armed (called under the lock, only after a change).</summary>
    private protected abstract void BuildKernelSet(ReadOnlySpan<DescriptorEntry> watched);

    /// <summary>One kernel call; returns its result (-1 with errno set on failure).</summary>
    private protected abstract int KernelSetWait(TimeSpan slice);

    /// <summary>Whether the last kernel call reported the wake pipe readable.</summary>
    private protected abstract bool WakeFired();

    /// <summary>The last kernel call's report for watched entry <paramref name="index"/>.</summary>
    private protected abstract void Report(int index, out bool input, out bool output, out bool priority, out bool error, out bool hangup, out bool readHangup, out bool invalid);

    private protected override void Watch(DescriptorEntry entry) => Changed();

    private protected override void Rewatch(DescriptorEntry entry, ulong token, Interest interest, TriggerMode mode)
    {
        Table.Update(entry, token, interest, mode);
        Changed();
    }

    private protected override void Rewatch(DescriptorEntry entry) => Changed();

    /// <summary>Nothing to tell the kernel: it only knows the set we pass it. A closed entry is found by the waiting
    /// thread itself, which rebuilds the set before its next call.</summary>
    private protected override void Unwatch(DescriptorEntry entry, Removal why)
    {
        if (why == Removal.Closed)
            _dirty = true;
        else
            Changed();
    }

    private void Changed()
    {
        _dirty = true;
        // A waiter inside poll/select only sees the set it passed: nudge it through the wake pipe so the change
        // takes effect in this wait. The nudge is not the caller's wake: the loop keeps waiting after it.
        if (_waiterInKernel && Interlocked.Exchange(ref _nudgePending, 1) == 0)
            _pipe.Write();
    }

    private protected override string KernelCallName => _name;

    private protected override void PrepareWait()
    {
        if (_dirty)
            Rebuild();
        _waiterInKernel = true; // under the lock: a change made after this point nudges us
    }

    private protected override int KernelWait(int capacity, TimeSpan slice, out int errno)
    {
        int rc = KernelSetWait(slice);
        errno = rc < 0 ? Errno.Last : 0;
        if (errno == Errno.EBADF)
        {
            // select(2) fails the whole call when one descriptor of the set was closed without being
            // deregistered (poll marks just that one POLLNVAL). Do what poll does: stop watching the closed
            // ones (in Translate, under the lock) and wait again, so one misuse reads the same on every backend.
            _sawBadDescriptor = true;
            errno = 0;
        }
        return Math.Max(rc, 0);
    }

    private protected override int Translate(int count, Span<PollEvent> events)
    {
        _waiterInKernel = false;
        if (_sawBadDescriptor)
        {
            _sawBadDescriptor = false;
            for (int i = 0; i < _watchedCount; i++)
            {
                if (LibC.fcntl(_watched[i].Descriptor, LibC.F_GETFD, 0) < 0)
                    StopWatchingClosed(_watched[i]);
            }
        }
        if (count == 0)
            return 0;
        if (WakeFired())
        {
            Volatile.Write(ref _nudgePending, 0);
            _pipe.Drain();
        }
        return Collect(events);
    }

    private void Rebuild()
    {
        if (_watched.Length < Table.Count)
            _watched = new DescriptorEntry[Math.Max(Table.Count, _watched.Length * 2)];
        _watchedCount = 0;
        foreach (var entry in Table.Live) // a struct enumerator: no allocation
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
            if (entry.Removed || entry.Closed || !(input | output | priority | error | hangup | readHangup | invalid))
                continue;
            if (invalid || HandleClosed(entry))
            {
                // POLLNVAL: the raw descriptor was closed without deregistering; or the registered handle was
                // closed (its number may already name another file). epoll forgets closed descriptors silently;
                // do the same rather than spin on it, or report another file's readiness under this token.
                StopWatchingClosed(entry);
                continue;
            }
            var armed = entry.Armed; // may have shrunk since the set was built
            if (derive)
                HangupDerivation.DeriveIfReadable(Table.Os, entry, armed, input, ref hangup, ref readHangup);
            if (HangupDerivation.IsLoneHangup(input, output, error, hangup, readHangup))
                HangupDerivation.ExplainLoneHangup(Table.Os, entry.Descriptor, ref input, ref hangup);
            var readiness = ReadinessRules.Normalize(armed, input, output, priority, error, hangup, readHangup);
            if (readiness == Readiness.None)
                continue;
            events[written++] = new PollEvent(entry.Token, readiness);
            if (entry.DisarmReported(readiness))
                _dirty = true; // the set changes: rebuilt before the next kernel call
        }
        return written;
    }

    private protected override void WriteWake() => _pipe.Write();

    private protected override void CloseKernel() => _pipe.Dispose();
}
