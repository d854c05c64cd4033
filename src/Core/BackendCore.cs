using System.Diagnostics;
using IoMux.Interop;

namespace IoMux;

/// <summary>
/// What a backend supplies to the one wait loop in <see cref="BackendCore"/>: its single kernel wait, the
/// translation of what that wait returned, and the write that wakes it. Everything else a wait needs — the
/// deadline, resumption after EINTR, wake coalescing, spurious-wake filtering — lives in the loop, once (as
/// smol-rs/polling's <c>wait_impl</c> sits over each backend's one kernel call).
/// </summary>
internal interface IKernelWait
{
    /// <summary>The kernel call's name for error messages (epoll_wait, poll, kevent, port_getn ...).</summary>
    string KernelCallName { get; }

    /// <summary>On the waiting thread, before every kernel wait: poll and select rebuild their set after a change,
    /// event ports re-associate what the previous wait delivered. Throws <see cref="ObjectDisposedException"/>
    /// once the backend is disposed.</summary>
    void BeforeWait();

    /// <summary>One kernel wait for at most <paramref name="capacity"/> events, blocking at most
    /// <paramref name="slice"/> (<see cref="Timeout.InfiniteTimeSpan"/>: no limit; zero: do not block).
    /// Returns how many kernel events are waiting to be translated (also when the call failed with events
    /// delivered, as port_getn can) and the call's errno (0 on success or on a plain timeout).</summary>
    int KernelWait(int capacity, TimeSpan slice, out int errno);

    /// <summary>Turns <paramref name="count"/> kernel events into at most one event per live registration;
    /// returns how many it wrote. Drops the wake channel's own events and events of registrations that are gone.</summary>
    int Translate(int count, Span<PollEvent> events);

    /// <summary>Writes to the wake channel (eventfd, pipe, EVFILT_USER trigger, port_send). Called at most
    /// once per coalesced wake, never after the backend began disposing.</summary>
    void WriteWake();
}

/// <summary>
/// The state and the loop every backend shares: the lock for its control calls, the registration table, the
/// counters, and the wait loop with its wake gate. A backend is then its kernel call, its translation and its
/// registration calls.
/// </summary>
internal sealed class BackendCore
{
    private readonly WakeGate _wakeGate = new();
    private readonly CloseGuard _closeGuard = new();
    private bool _disposed;

    /// <summary>Held around registration changes and around translation (the table is not thread-safe).</summary>
    public object Gate { get; } = new();

    /// <summary>The registrations.</summary>
    public DescriptorTable Table { get; } = new();

    /// <summary>Diagnostics.</summary>
    public BackendCounters Counters { get; } = new();

    /// <summary>True once <see cref="BeginDispose"/> ran (read under <see cref="Gate"/>).</summary>
    public bool IsDisposed => _disposed;

    /// <summary>Under <see cref="Gate"/>: throws when the backend is disposed.</summary>
    public void ThrowIfDisposed(object backend) => ObjectDisposedException.ThrowIf(_disposed, backend);

    /// <summary>
    /// The wait loop: waits in slices of the time left, resumes after EINTR, consumes a pending wake, and keeps
    /// waiting when a kernel wait returned only events that translate to nothing for the caller (the wake
    /// channel written by a wake that raced with the previous wait, a poll set nudge, an event of a registration
    /// deleted meanwhile). Never returns before the deadline unless events or a wake arrived. Allocates nothing.
    /// </summary>
    public int Wait(IKernelWait kernel, Span<PollEvent> events, TimeSpan timeout)
    {
        var deadline = WaitDeadline.Start(timeout);
        if (_lastWaitFoundWork && SpinTicks > 0 && !deadline.IsZero && Spin(kernel, events, deadline, out int found))
            return Found(found);
        while (true)
        {
            int written = WaitOnce(kernel, events, deadline, out bool woken);
            if (written > 0 || woken || deadline.HasPassed)
                return Found(written);
        }
    }

    /// <summary>One kernel wait bounded by <paramref name="deadline"/> (a zero deadline: a poll that announces no
    /// sleep to the wake gate and only consumes a pending wake), translated into <paramref name="events"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private int WaitOnce(IKernelWait kernel, Span<PollEvent> events, in WaitDeadline deadline, out bool woken)
    {
        kernel.BeforeWait();
        var slice = _wakeGate.BeginWait(deadline);
        Counters.OnKernelWait();
        int count = kernel.KernelWait(events.Length, slice, out int errno);
        woken = _wakeGate.EndWait(deadline);
        if (errno != 0)
        {
            if (errno != Errno.EINTR)
                throw new PosixException(kernel.KernelCallName, errno);
            Counters.OnInterrupted();
        }
        return count > 0 ? kernel.Translate(count, events) : 0;
    }

    /// <summary>How long a wait polls (zero-timeout kernel waits) before it sleeps, in Stopwatch ticks; 0: never.
    /// Set through <see cref="Poller.SpinBeforeSleep"/>.</summary>
    public long SpinTicks;

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
    private bool Spin(IKernelWait kernel, Span<PollEvent> events, in WaitDeadline deadline, out int written)
    {
        long end = Stopwatch.GetTimestamp() + (SpinTicks >> Math.Min(_fruitlessSpins, 16));
        while (true)
        {
            written = WaitOnce(kernel, events, default, out bool woken); // default: the zero deadline, a poll
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

    /// <summary>Any thread: requests a wake; writes the channel only when the waiter sleeps and nobody wrote yet.</summary>
    public void Wake(IKernelWait kernel)
    {
        if (!_wakeGate.Request() || !_closeGuard.TryEnter())
            return;
        try
        {
            kernel.WriteWake();
            Counters.OnWakeWrite();
        }
        finally
        {
            _closeGuard.Exit();
        }
    }

    /// <summary>Waits for the wakers writing now to leave (a backend that replaced its wake target closes the old one
    /// after this: a waker that entered later reads the new one).</summary>
    public void WaitForWakers() => _closeGuard.WaitForWriters();

    /// <summary>Marks the backend disposed and waits for wakers that are writing to leave. True for the first
    /// caller only, who then closes the kernel objects: a waker must never write into a closed number that
    /// may already belong to another file.</summary>
    public bool BeginDispose()
    {
        lock (Gate)
        {
            if (_disposed)
                return false;
            _disposed = true;
        }
        return _closeGuard.Close();
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

    /// <summary>Closes both ends (only after <see cref="BackendCore.BeginDispose"/> returned true).</summary>
    public void Dispose()
    {
        LibC.CloseQuietly(ReadEnd);
        LibC.CloseQuietly(WriteEnd);
    }
}
