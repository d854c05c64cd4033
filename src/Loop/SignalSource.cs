using System.Runtime.InteropServices;

namespace IoMux.Loop;

/// <summary>
/// A POSIX signal, delivered on the loop thread. Built on .NET's <see cref="PosixSignalRegistration"/>: the
/// runtime's handler counts the delivery and wakes the loop; the callback then runs in the loop's next
/// iteration with the number of deliveries since the last one (signals coalesce, as the kernel's do).
/// signalfd is not used: it only works when the signal is blocked in every thread, which a process with a
/// runtime's threads cannot promise.
/// </summary>
public sealed class SignalSource : EventSource
{
    private readonly Action<SignalSource, int> _callback;
    private readonly PosixSignalRegistration _registration;
    private int _deliveries;

    internal SignalSource(EventLoop loop, PosixSignal signal, Action<SignalSource, int> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description ?? Describe(signal))
    {
        Signal = signal;
        _callback = callback;
        _registration = PosixSignalRegistration.Create(signal, context =>
        {
            context.Cancel = true; // handled here: no default action (SIGTERM would end the process)
            Interlocked.Increment(ref _deliveries);
            loop.WakeUp();
        });
    }

    /// <summary>The signal (a <see cref="PosixSignal"/> name, or a raw number cast to it).</summary>
    public PosixSignal Signal { get; }

    /// <summary>"signal SIGTERM". The named signals are spelled here rather than by formatting the enum: that is
    /// JIT-compiled (Enum's formatting over a value type), at the start of every program that handles SIGTERM.</summary>
    private static string Describe(PosixSignal signal) => signal switch
    {
        PosixSignal.SIGHUP => "signal SIGHUP",
        PosixSignal.SIGINT => "signal SIGINT",
        PosixSignal.SIGQUIT => "signal SIGQUIT",
        PosixSignal.SIGTERM => "signal SIGTERM",
        PosixSignal.SIGCHLD => "signal SIGCHLD",
        _ => $"signal {signal}",
    };

    internal bool IsPending => Volatile.Read(ref _deliveries) > 0;

    internal override void Dispatch() => _callback(this, Interlocked.Exchange(ref _deliveries, 0));

    private protected override void OnDispose() => _registration.Dispose();
}

/// <summary>SIGRTMIN as the C library sets it (glibc keeps 32 and 33; .NET takes SIGRTMIN itself for thread activation).</summary>
internal static partial class RealtimeSignals
{
    [LibraryImport("libc")] private static partial int __libc_current_sigrtmin();

    /// <summary>SIGRTMIN; 34 when the C library does not say (glibc's value).</summary>
    public static readonly int Minimum = Read();

    private static int Read()
    {
        try
        {
            return __libc_current_sigrtmin();
        }
        catch (EntryPointNotFoundException)
        {
            return 34;
        }
    }
}
