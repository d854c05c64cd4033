using IoMux.Interop;

namespace IoMux.AspNetCore;

/// <summary>The descriptors one transport's connections hold, across its listeners and loops, checked against a
/// <see cref="DescriptorBudget"/> (as IoMux.Web's AcceptGate does): a loop accepts only while one more connection
/// leaves the .NET runtime its reserve below the soft RLIMIT_NOFILE (at the limit the runtime cannot start a thread
/// and aborts the process: docs/reliability/descriptor-limit.md). A few <see cref="SpareDescriptors"/> are held
/// while the process is well and given back when it is at its limit.</summary>
internal sealed class TransportDescriptors : IDisposable
{
    private readonly DescriptorBudget _budget = new();
    private readonly SpareDescriptors _spares = new();
    private readonly Lock _gate = new();
    private int _connections;
    private long _measured = System.Diagnostics.Stopwatch.GetTimestamp(); // when the budget's base was last measured

    public TransportDescriptors() => _spares.Take();

    /// <summary>How often, at most, the base is measured again while no connection is open.</summary>
    internal static readonly TimeSpan RemeasureEvery = TimeSpan.FromSeconds(1);

    /// <summary>True while one more connection fits the budget. With no connection open the base (what the process
    /// holds beside the connections) is measured again, at most once per <see cref="RemeasureEvery"/>: measured only
    /// at the first bind, it missed every descriptor the application opened later (files, clients, more listeners),
    /// so the accounting let accepts eat the runtime's reserve until accept(2) said EMFILE. At most once a second:
    /// listing /proc/self/fd costs a system call per descriptor, and a client with a connection per request makes
    /// nearly every accept one at zero connections.</summary>
    public bool AllowsOneMore()
    {
        int connections = Volatile.Read(ref _connections);
        if (connections == 0 && Stale())
        {
            // Under the lock, and the time written after the measurement: another loop accepting meanwhile waits for
            // the new base instead of deciding on the old one (it did, and accepted into EMFILE while listing
            // /proc/self/fd took tens of milliseconds on a loaded machine).
            lock (_gate)
            {
                if (Stale())
                    Measure();
            }
        }
        return _budget.Allows(connections, 1);
    }

    private bool Stale() => System.Diagnostics.Stopwatch.GetElapsedTime(Volatile.Read(ref _measured)) >= RemeasureEvery;

    private void Measure()
    {
        _budget.Remeasure();
        Volatile.Write(ref _measured, System.Diagnostics.Stopwatch.GetTimestamp());
    }

    /// <summary>accept(2) said EMFILE or ENFILE although the budget allowed it: the accounting missed descriptors the
    /// process opened while connections were open (so the base was not measured again). Measured now, with the
    /// connections' own descriptors in the base too: that overcounts until the next idle measurement, which only makes
    /// the budget count the real descriptors sooner (DescriptorBudget does near the limit). Without it, resuming
    /// took the spares back and accepted into the runtime's last descriptors again every pause: a thread the runtime
    /// started then found none and the process aborted ("Out of memory.", DescriptorBudgetTests on select).</summary>
    public void RanOut()
    {
        lock (_gate)
            Measure();
    }

    public void Opened() => Interlocked.Increment(ref _connections);

    public void Closed() => Interlocked.Decrement(ref _connections);

    /// <summary>At the limit: the spares' descriptors are free for the rest of the process.</summary>
    public void GiveSpares()
    {
        lock (_gate)
            _spares.Give();
    }

    /// <summary>True when accepting may resume: a connection and the spares fit the budget, and the spares could
    /// be taken back (the process is no longer at its limit).</summary>
    public bool TryResume()
    {
        lock (_gate)
            return _budget.Allows(Volatile.Read(ref _connections), 1 + _spares.Missing) && _spares.Take();
    }

    public void Dispose()
    {
        lock (_gate)
            _spares.Dispose();
    }
}
