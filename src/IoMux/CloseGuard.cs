namespace IoMux;

/// <summary>
/// Keeps a descriptor from being closed while another thread is about to write to it (a wake racing with
/// dispose), without a lock on the waker's path: writers enter and exit, the closer waits for them to leave.
/// Writing into a closed number is worse than failing: the number may already belong to another file.
/// </summary>
internal sealed class CloseGuard
{
    private const int ClosedBit = 1 << 30;
    private int _state; // active writers, plus ClosedBit once closing began

    /// <summary>Enters; false once closed (then do nothing).</summary>
    public bool TryEnter()
    {
        if ((Interlocked.Increment(ref _state) & ClosedBit) == 0)
            return true;
        Interlocked.Decrement(ref _state);
        return false;
    }

    /// <summary>Leaves after a successful <see cref="TryEnter"/>.</summary>
    public void Exit() => Interlocked.Decrement(ref _state);

    /// <summary>Waits for the writers inside now to leave, without closing.</summary>
    public void WaitForWriters()
    {
        var spin = new SpinWait();
        while ((Volatile.Read(ref _state) & ~ClosedBit) != 0)
            spin.SpinOnce();
    }

    /// <summary>Marks closed and waits for writers inside to leave. True for the first caller only, who then closes.</summary>
    public bool Close()
    {
        int previous = Interlocked.Or(ref _state, ClosedBit);
        if ((previous & ClosedBit) != 0)
            return false;
        var spin = new SpinWait();
        while ((Volatile.Read(ref _state) & ~ClosedBit) != 0)
            spin.SpinOnce();
        return true;
    }
}
