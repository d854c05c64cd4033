using IoMux.Interop;

namespace IoMux.Backends.Poll;

/// <summary>
/// The self-pipe that wakes a thread blocked in poll(2) or select(2). It carries two kinds of wake: the
/// caller's <see cref="Wake"/> (coalesced by a <see cref="WakeGate"/>, and reported by making the wait return),
/// and the backend's own <see cref="Nudge"/> after another thread changed the registrations (the waiter
/// rebuilds its set and keeps waiting). Both coalesce to at most one byte in the pipe per sleep.
/// </summary>
internal sealed unsafe class PipeWaker : IDisposable
{
    private readonly BackendCounters _counters;
    private readonly CloseGuard _closeGuard = new();
    private int _nudgePending;

    public PipeWaker(BackendCounters counters)
    {
        _counters = counters;
        LibC.CreateNonBlockingPipe(out int readEnd, out int writeEnd);
        ReadEnd = readEnd;
        WriteEnd = writeEnd;
    }

    /// <summary>The end the waiter watches for readability.</summary>
    public int ReadEnd { get; }

    private int WriteEnd { get; }

    public WakeGate Gate { get; } = new();

    public void Wake()
    {
        if (Gate.Request())
            WriteByte(countAsWake: true);
    }

    /// <summary>Wakes the waiter so that it sees a registration change; not reported to the caller.</summary>
    public void Nudge()
    {
        if (Interlocked.Exchange(ref _nudgePending, 1) == 0)
            WriteByte(countAsWake: false);
    }

    private void WriteByte(bool countAsWake)
    {
        if (!_closeGuard.TryEnter())
            return;
        try
        {
            byte one = 1;
            // EAGAIN means the pipe is full of unread wakes: the waiter will wake anyway.
            LibC.write(WriteEnd, &one, 1);
            if (countAsWake)
                _counters.OnWakeWrite();
        }
        finally
        {
            _closeGuard.Exit();
        }
    }

    /// <summary>Empties the pipe (it is level-triggered) and re-allows nudges.</summary>
    public void Drain()
    {
        Volatile.Write(ref _nudgePending, 0);
        byte* buffer = stackalloc byte[64];
        while (LibC.read(ReadEnd, buffer, 64) == 64)
        {
        }
    }

    public void Dispose()
    {
        if (!_closeGuard.Close())
            return;
        LibC.CloseQuietly(ReadEnd);
        LibC.CloseQuietly(WriteEnd);
    }
}
