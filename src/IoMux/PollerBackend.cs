using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux;

/// <summary>Why a registration leaves the kernel's watch (<see cref="PollerBackend.Unwatch"/>).</summary>
internal enum Removal
{
    /// <summary>The caller deregistered it; the descriptor stays open for now.</summary>
    Delete,
    /// <summary>The caller deregistered it and closes the descriptor right after (never duplicated): a kernel that
    /// drops a registration at close may skip its call (epoll: one epoll_ctl less per connection).</summary>
    Closing,
    /// <summary>The wait path found the descriptor closed while registered (a closed handle, POLLNVAL, EBADF): the
    /// registration stays in the table until the caller deregisters it, but nothing of it is watched or reported.</summary>
    Closed,
}

/// <summary>
/// The one backend base class (as smol-rs/polling's <c>Poller</c> owns the wait loop over each backend's one kernel
/// call): it owns the registration table, the lock, the disposed state, the wait loop with its wake gate and spin,
/// and the closed-descriptor policy. Its public methods do the checks and the locking once and call a few hooks a
/// backend overrides: <see cref="Watch"/>, <see cref="Rewatch(DescriptorEntry, ulong, Interest, TriggerMode)"/> and
/// <see cref="Unwatch"/> (the registration's kernel calls), <see cref="KernelWait"/> and <see cref="Translate"/>
/// (the wait), <see cref="WriteWake"/> and <see cref="CloseKernel"/>. A backend file is then its kernel calls and
/// their translation. Every backend is internal: users choose one through <c>BackendCatalog</c> and
/// <c>PollerFactory</c> (docs/API-REVIEW.md, "Backends").
/// </summary>
/// <remarks>
/// Why three registration calls (add, modify, delete) and not one "set" call, as the nginx talk asks of
/// epoll_ctl: each call states an intent whose violation is a bug worth a typed error. A double add
/// (<see cref="AlreadyRegisteredException"/>) usually means two owners think they own one descriptor; a
/// modify of an unknown descriptor (<see cref="NotRegisteredException"/>) means a registration was lost.
/// <para>Thread safety: registration calls and <see cref="Wake"/> may come from any thread, also while another
/// thread is inside <see cref="Wait"/>; a change made during a wait takes effect by the next wait at the latest.
/// Only one thread waits at a time (the <see cref="Poller"/> enforces it).</para>
/// </remarks>
internal abstract class PollerBackend : IDisposable
{
    private readonly object _lock = new(); // guards the table and the registration calls
    private readonly WakeCoalescer _wakes = new();
    private readonly CloseGuard _closeGuard = new();
    private readonly WaitLocking _waitLocking;
    private readonly string? _probe;
    private bool _disposed;

    /// <summary>Which parts of the wait run under the lock.</summary>
    private protected enum WaitLocking
    {
        /// <summary>Translation reads the table's lock-free slot states (epoll).</summary>
        None,
        /// <summary>Translation runs under the lock, when the kernel returned events.</summary>
        Translate,
        /// <summary>Translation runs under the lock after every kernel wait, also an empty one (poll and select
        /// track whether the waiter is inside the kernel).</summary>
        TranslateAlways,
    }

    /// <param name="waitLocking">Which parts of the wait run under the lock.</param>
    /// <param name="probe">Null when the kernel's own registration call refuses closed and unwaitable descriptors
    /// (epoll); otherwise the operation named in the errors of the user-space check made on add instead.</param>
    private protected PollerBackend(WaitLocking waitLocking, string? probe)
    {
        _waitLocking = waitLocking;
        _probe = probe;
    }

    /// <summary>What the backend does natively and what it emulates.</summary>
    public BackendCapabilities Capabilities { get; private protected set; }

    /// <summary>Counters for tests and diagnostics (kernel waits made, interruptions, wake writes).</summary>
    public BackendCounters Counters { get; } = new();

    /// <summary>The registrations (mutated under the lock only).</summary>
    private protected DescriptorTable Table { get; } = new();

    /// <summary>The backend's own descriptor when another poller can watch it (epoll), else -1.</summary>
    internal virtual int PollDescriptor => -1;

    /// <summary>How many registrations are live (none once disposed: disposing retires them all).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
                return _disposed ? 0 : Table.Count;
        }
    }

    // ---- Registration: the checks and the lock once, the kernel calls in the hooks ----

    /// <summary>Starts watching <paramref name="fd"/>; <paramref name="token"/> comes back in its events.</summary>
    /// <exception cref="AlreadyRegisteredException">The descriptor is already registered here.</exception>
    /// <exception cref="UnsupportedDescriptorException">A regular file or directory (always ready; never waitable).</exception>
    /// <exception cref="DescriptorOutOfRangeException">The descriptor is above <see cref="BackendCapabilities.MaxDescriptor"/>.</exception>
    /// <exception cref="PosixException">The kernel refused it, e.g. EBADF for a closed descriptor.</exception>
    public void Add(int fd, ulong token, Interest interest, TriggerMode mode) => Add(fd, token, interest, mode, null, null);

    /// <summary>The same for a <see cref="Poller"/>: <paramref name="owner"/> is the registered handle (null for a raw
    /// descriptor), checked on the wait path so that events of a closed handle never reach the caller; a registration
    /// whose handle was closed is retired here when its number is registered again.</summary>
    internal void Add(int fd, ulong token, Interest interest, TriggerMode mode, SafeHandle? owner, Registration? registration)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        CheckInterest(fd, interest);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (Table.Find(fd) is { } existing)
            {
                if (existing.Owner is not { IsClosed: true })
                    throw new AlreadyRegisteredException(fd);
                // The earlier registration's handle was closed and the number now names another file: retire it
                // (its deletion finds nothing of the new file to remove) and register the new one.
                RemoveLocked(existing, Removal.Delete);
            }
            var entry = _probe is null ? Table.Add(fd, token, interest, mode, owner) : Table.AddChecked(fd, token, interest, mode, owner, _probe);
            try
            {
                Watch(entry);
            }
            catch
            {
                Table.Remove(entry);
                throw;
            }
            entry.Registration = registration;
        }
    }

    /// <summary>Changes interest, mode or token; re-arms a oneshot registration and every edge direction.</summary>
    /// <exception cref="NotRegisteredException">The descriptor is not registered here.</exception>
    public void Modify(int fd, ulong token, Interest interest, TriggerMode mode)
    {
        CheckInterest(fd, interest);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            ModifyLocked(Table.Get(fd), token, interest, mode);
        }
    }

    /// <summary>The same for a <see cref="Poller"/>'s registration, which is updated too.</summary>
    /// <exception cref="ObjectDisposedException">The registration was deregistered (or replaced) meanwhile.</exception>
    internal void Modify(Registration registration, Interest interest, TriggerMode mode)
    {
        CheckInterest(registration.Descriptor, interest);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (Table.Find(registration.Descriptor) is not { } entry || entry.Registration != registration)
                throw new ObjectDisposedException(nameof(Registration), $"The registration of descriptor {registration.Descriptor} was disposed.");
            ModifyLocked(entry, registration.Token, interest, mode);
            registration.Update(interest, mode);
        }
    }

    private void ModifyLocked(DescriptorEntry entry, ulong token, Interest interest, TriggerMode mode)
    {
        entry.Closed = false; // a modify proves the number is the caller's again
        Rewatch(entry, token, interest, mode);
    }

    /// <summary>Stops watching <paramref name="fd"/>. Must be called before the descriptor is released; if
    /// it was closed already, the kernel's complaint (EBADF, ENOENT) is swallowed.</summary>
    /// <exception cref="NotRegisteredException">The descriptor is not registered here.</exception>
    public void Delete(int fd)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            RemoveLocked(Table.Get(fd), Removal.Delete);
        }
    }

    /// <summary>Deregisters a <see cref="Poller"/>'s registration and retires it; <paramref name="closing"/>: the caller
    /// closes the descriptor right after (<see cref="Removal.Closing"/>). Nothing to do when it is gone already.</summary>
    internal void Delete(Registration registration, bool closing)
    {
        lock (_lock)
        {
            try
            {
                if (!_disposed && Table.Find(registration.Descriptor) is { } entry && entry.Registration == registration)
                    RemoveLocked(entry, closing ? Removal.Closing : Removal.Delete);
            }
            finally
            {
                registration.Retire();
            }
        }
    }

    private void RemoveLocked(DescriptorEntry entry, Removal why)
    {
        Table.Remove(entry);
        entry.Registration?.Retire();
        Unwatch(entry, why);
    }

    /// <summary>The consumer hit would-block in <paramref name="directions"/>: an emulated edge registration is
    /// watched again in them. A no-op for level, oneshot and native edge modes, and once disposed.</summary>
    public void NotifyWouldBlock(int fd, Interest directions)
    {
        if (Capabilities.NativeEdge)
            return; // native edge re-arms itself when new readiness arrives
        lock (_lock)
        {
            if (!_disposed && Table.TryArmAfterWouldBlock(fd, directions) is { Closed: false } entry)
                Rewatch(entry);
        }
    }

    // ---- The closed-descriptor policy, once ----

    /// <summary>Under the lock, on the wait path: <paramref name="entry"/>'s descriptor was closed while registered (its
    /// handle is closed, or the kernel said POLLNVAL or EBADF). Stop watching it and never report it again: its number
    /// may already name another file. The entry stays until the caller deregisters it (which then makes no kernel call
    /// that matters). Counted in <see cref="BackendCounters.ClosedWhileRegistered"/>.</summary>
    private protected void StopWatchingClosed(DescriptorEntry entry)
    {
        if (entry.Closed || entry.Removed)
            return;
        entry.Closed = true;
        entry.Armed = Interest.None;
        Unwatch(entry, Removal.Closed);
        Counters.OnClosedWhileRegistered(entry.Descriptor);
    }

    /// <summary><see cref="StopWatchingClosed(DescriptorEntry)"/> from a translation that runs without the lock.</summary>
    private protected void StopWatchingClosed(ulong kernelData)
    {
        lock (_lock)
        {
            if (!_disposed && Table.Resolve(kernelData) is { } entry)
                StopWatchingClosed(entry);
        }
    }

    /// <summary>True when the handle registered for <paramref name="entry"/> was closed: its events must not reach the caller.</summary>
    private protected static bool HandleClosed(DescriptorEntry entry) => entry.Owner is { IsClosed: true };

    // ---- The hooks ----

    /// <summary>Outside the lock, before add and modify: refuses what the kernel call cannot represent (select: a
    /// descriptor at or above FD_SETSIZE; kqueue: priority without a filter for it).</summary>
    private protected virtual void CheckInterest(int fd, Interest interest) { }

    /// <summary>Under the lock: the kernel call that starts watching a new entry. Throws to refuse it (the entry is
    /// removed from the table then).</summary>
    private protected abstract void Watch(DescriptorEntry entry);

    /// <summary>Under the lock: the entry gets a new token, interest and mode (the hook updates the table with
    /// <see cref="DescriptorTable.Update"/>, before or after its kernel call as the kernel needs).</summary>
    private protected abstract void Rewatch(DescriptorEntry entry, ulong token, Interest interest, TriggerMode mode);

    /// <summary>Under the lock: an emulated edge entry's armed set grew (<see cref="NotifyWouldBlock"/>).</summary>
    private protected virtual void Rewatch(DescriptorEntry entry) { }

    /// <summary>Under the lock: the entry leaves the kernel's watch, for the reason given (the table has dropped it
    /// already unless <paramref name="why"/> is <see cref="Removal.Closed"/>).</summary>
    private protected abstract void Unwatch(DescriptorEntry entry, Removal why);

    /// <summary>The kernel call's name for error messages (epoll_wait, poll, kevent, port_getn ...).</summary>
    private protected abstract string KernelCallName { get; }

    /// <summary>Set by a backend that has work to do before its next kernel wait (rebuild a set, re-associate):
    /// <see cref="PrepareWait"/> then runs under the lock on the waiting thread.</summary>
    private protected bool PrepareRequested;

    /// <summary>Under the lock, on the waiting thread, before a kernel wait, when <see cref="PrepareRequested"/> is set.</summary>
    private protected virtual void PrepareWait() { }

    /// <summary>One kernel wait for at most <paramref name="capacity"/> events, blocking at most
    /// <paramref name="slice"/> (<see cref="Timeout.InfiniteTimeSpan"/>: no limit; zero: do not block).
    /// Returns how many kernel events are waiting to be translated (also when the call failed with events
    /// delivered, as port_getn can) and the call's errno (0 on success or on a plain timeout).</summary>
    private protected abstract int KernelWait(int capacity, TimeSpan slice, out int errno);

    /// <summary>Turns <paramref name="count"/> kernel events into at most one event per live registration;
    /// returns how many it wrote. Drops the wake channel's own events and events of registrations that are gone.</summary>
    private protected abstract int Translate(int count, Span<PollEvent> events);

    /// <summary>Writes to the wake channel (eventfd, pipe, EVFILT_USER trigger, port_send). Called at most
    /// once per coalesced wake, never after the backend began disposing.</summary>
    private protected abstract void WriteWake();

    /// <summary>Closes the kernel objects (once, after every waker left). Registered descriptors stay open: they
    /// are the caller's.</summary>
    private protected abstract void CloseKernel();

    // ---- The wait loop ----

    /// <summary>
    /// Blocks until at least one registration is ready, <paramref name="timeout"/> passes, or <see cref="Wake"/>
    /// is called; writes at most one event per registration and returns how many. Waits in slices of the time
    /// left, resumes after EINTR, consumes a pending wake, and keeps waiting when a kernel wait returned only
    /// events that translate to nothing for the caller (the wake channel written by a wake that raced with the
    /// previous wait, a poll set nudge, an event of a registration deleted meanwhile). Allocates nothing.
    /// </summary>
    public int Wait(Span<PollEvent> events, TimeSpan timeout)
    {
        var deadline = WaitDeadline.Start(timeout);
        if (_lastWaitFoundWork && SpinTicks > 0 && !deadline.IsZero && Spin(events, deadline, out int found))
            return Found(found);
        while (true)
        {
            int written = WaitOnce(events, deadline, out bool woken);
            if (written > 0 || woken || deadline.HasPassed)
                return Found(written);
        }
    }

    /// <summary>One kernel wait bounded by <paramref name="deadline"/> (a zero deadline: a poll that announces no
    /// sleep to the wake gate and only consumes a pending wake), translated into <paramref name="events"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private int WaitOnce(Span<PollEvent> events, in WaitDeadline deadline, out bool woken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (PrepareRequested)
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                PrepareWait();
            }
        }
        var slice = _wakes.BeginWait(deadline);
        Counters.OnKernelWait();
        int count = KernelWait(events.Length, slice, out int errno);
        woken = _wakes.EndWait(deadline);
        if (errno != 0)
        {
            if (errno != Errno.EINTR)
                throw new PosixException(KernelCallName, errno);
            Counters.OnInterrupted();
        }
        if (_waitLocking == WaitLocking.None)
            return count > 0 ? Translate(count, events) : 0;
        if (count == 0 && _waitLocking == WaitLocking.Translate)
            return 0;
        lock (_lock)
            return Translate(count, events);
    }

    /// <summary>How long a wait polls (zero-timeout kernel waits) before it sleeps, in Stopwatch ticks; 0: never.
    /// Set through <see cref="Poller.SpinBeforeSleep"/>.</summary>
    internal long SpinTicks;

    // Spinning pays only while work keeps coming: a wait spins only after a wait that found events, and each spin
    // that finds nothing halves the next one's budget (a hit restores it), so a loop whose events stopped coming
    // spins less and less, and an idle loop (its waits time out) not at all.
    private bool _lastWaitFoundWork;
    private int _fruitlessSpins;

    private int Found(int written)
    {
        _lastWaitFoundWork = written > 0;
        return written;
    }

    /// <summary>Polls until events or a wake arrive, the spin budget is spent or the deadline passes; true (and
    /// <paramref name="written"/>) when the wait is over without sleeping. The zero-timeout kernel waits announce no
    /// sleep to the wake gate, so a wake during the spin is a request consumed here, never a channel write.</summary>
    private bool Spin(Span<PollEvent> events, in WaitDeadline deadline, out int written)
    {
        long end = Stopwatch.GetTimestamp() + (SpinTicks >> Math.Min(_fruitlessSpins, 16));
        while (true)
        {
            written = WaitOnce(events, default, out bool woken); // default: the zero deadline, a poll
            if (written > 0 || woken)
            {
                _fruitlessSpins = 0;
                Counters.OnSpin(hit: true);
                return true;
            }
            if (Stopwatch.GetTimestamp() >= end || deadline.HasPassed)
            {
                _fruitlessSpins++;
                Counters.OnSpin(hit: false);
                return deadline.HasPassed;
            }
        }
    }

    /// <summary>Makes the current or next <see cref="Wait"/> return. Any thread; sticky until a wait consumes it;
    /// calls made before that wait returns are coalesced into at most one kernel write; a no-op once disposing.</summary>
    public void Wake()
    {
        if (!_wakes.Request() || !_closeGuard.TryEnter())
            return;
        try
        {
            WriteWake();
            Counters.OnWakeWrite();
        }
        finally
        {
            _closeGuard.Exit();
        }
    }

    /// <summary>Waits for the wakers writing now to leave (a backend that replaced its wake target closes the old one
    /// after this: a waker that entered later reads the new one).</summary>
    private protected void WaitForWakers() => _closeGuard.WaitForWriters();

    /// <summary>Marks the backend disposed, retires the registrations of a <see cref="Poller"/>, waits for wakers that
    /// are writing to leave and closes the kernel objects (the first call only): a waker must never write into a
    /// closed number that may already belong to another file. Closing the kernel object drops every remaining
    /// kernel registration.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
                return;
            _disposed = true;
            foreach (var entry in Table.Live)
                entry.Registration?.Retire();
        }
        if (_closeGuard.Close())
            CloseKernel();
    }
}

/// <summary>A non-blocking, close-on-exec self-pipe: the wake channel of poll, select, and kqueue without EVFILT_USER.</summary>
internal sealed unsafe class WakePipe : IDisposable
{
    public WakePipe()
    {
        LibC.CreateNonBlockingPipe(out int readEnd, out int writeEnd);
        ReadEnd = readEnd;
        WriteEnd = writeEnd;
    }

    /// <summary>The end the waiter watches for readability.</summary>
    public int ReadEnd { get; }

    /// <summary>The end wakers write.</summary>
    public int WriteEnd { get; }

    /// <summary>Writes one byte. EAGAIN means the pipe is full of unread wakes: the waiter wakes anyway.</summary>
    public void Write()
    {
        byte one = 1;
        LibC.write(WriteEnd, &one, 1);
    }

    /// <summary>Empties the pipe (it is watched level-triggered).</summary>
    public void Drain()
    {
        byte* buffer = stackalloc byte[64];
        while (LibC.read(ReadEnd, buffer, 64) == 64)
        {
        }
    }

    /// <summary>Closes both ends (only after the backend began disposing).</summary>
    public void Dispose()
    {
        LibC.CloseQuietly(ReadEnd);
        LibC.CloseQuietly(WriteEnd);
    }
}
