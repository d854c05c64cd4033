using System.Runtime.InteropServices;
using IoMux.Interop;

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

    private protected override int PriorityValue { get; set; }
    private protected override string? DescriptionValue { get; set; }
    private protected override long IdValue { get; set; }
    internal override SourceVisit Visit => SourceVisit.WhenSignalled;
    // The loop's own helpers (SIGCHLD for child sources, SignalExit's pair) only serve other sources.
    internal override bool CanWakeLoop => !IsLoopHelper && base.CanWakeLoop;

    internal SignalSource(EventLoop loop, PosixSignal signal, Action<SignalSource, int> callback, int priority, SourceState state, string? description,
        bool loopHelper)
        : base(loop, priority, state, description ?? Describe(signal))
    {
        Signal = signal;
        IsLoopHelper = loopHelper;
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

    /// <summary>Made by the loop for itself (<see cref="EventLoop.SignalExit"/>, the SIGCHLD source behind child
    /// sources): not counted as one signal's source by <see cref="EventLoop.AddSignal"/>, nor by
    /// <see cref="EventLoop.ExitOnIdle"/> as a source that could wake the loop.</summary>
    internal bool IsLoopHelper { get; }

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

    internal override bool IsPending => Volatile.Read(ref _deliveries) > 0;

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

/// <summary>The signals <see cref="EventLoop.AddSignal"/> refuses, per system, from each system's headers. A loop
/// source hears of a signal in its next iteration, on the loop thread; that cannot work for
/// <list type="bullet">
/// <item>the faults a thread raises on itself (SIGILL, SIGTRAP, SIGFPE, SIGBUS, SIGSEGV, SIGSYS): the runtime turns
/// them into exceptions (NullReferenceException for SIGSEGV) or crash reports; a registration that cancelled the
/// default action would send the faulting thread back to the same instruction, forever. (sd-event cannot serve them
/// either: a fault while the signal is blocked for signalfd kills the process.)</item>
/// <item>SIGKILL and SIGSTOP, which no process can catch (the runtime answers EINVAL as an IOException; sd-event
/// -EINVAL);</item>
/// <item>the signals the C library keeps for its threads (glibc's 32 and 33 and .NET's SIGRTMIN on Linux, FreeBSD's
/// SIGTHR and SIGLIBRT, illumos's SIGWAITING, SIGLWP and SIGCANCEL).</item>
/// </list></summary>
internal sealed record SignalFacts(int Sigbus, int Sigsys, int Sigstop, int[] ThreadLibrary)
{
    /// <summary>This process's system.</summary>
    public static readonly SignalFacts Here = For(
        OperatingSystem.IsLinux() ? "linux"
        : OperatingSystem.IsMacOS() || OperatingSystem.IsIOS() || OperatingSystem.IsTvOS() ? "macos"
        : OperatingSystem.IsFreeBSD() ? "freebsd"
        : Platform.IsIllumos ? "illumos"
        : "bsd");

    /// <summary>The facts of <paramref name="os"/> (linux, macos, freebsd, illumos, bsd).</summary>
    public static SignalFacts For(string os) => os switch
    {
        // torvalds/linux include/uapi/asm-generic/signal.h (107d3e53; x86's arch/x86/include/uapi/asm/signal.h has the
        // same numbers): SIGBUS 7, SIGSTOP 19, SIGSYS 31. 32 to SIGRTMIN: RealtimeSignals, read at run time.
        "linux" => new(7, 31, 19, []),
        // xnu bsd/sys/signal.h (1031c584): SIGBUS 10, SIGSYS 12, SIGSTOP 17; no signal kept for threads (NSIG 32).
        "macos" => new(10, 12, 17, []),
        // freebsd-src sys/sys/signal.h (039ea811): SIGBUS 10, SIGSYS 12, SIGSTOP 17, SIGTHR 32 "reserved by thread library",
        // SIGLIBRT 33 "reserved by real-time library" (lib/librt/sigev_thread.c: SIGSERVICE = SIGCANCEL + 1, the service
        // thread behind SIGEV_THREAD timers and mq_notify).
        "freebsd" => new(10, 12, 17, [32, 33]),
        // illumos-gate usr/src/uts/common/sys/iso/signal_iso.h (19b4ae69): SIGBUS 10, SIGSYS 12, SIGSTOP 23; SIGWAITING 32
        // and SIGLWP 33 "reserved signal no longer used by threading code", SIGCANCEL 36 "reserved signal for thread
        // cancellation".
        "illumos" => new(10, 12, 23, [32, 33, 36]),
        // NetBSD, OpenBSD, DragonFly: the 4.4BSD numbers, as macOS and FreeBSD keep them (their headers not read here).
        "bsd" => new(10, 12, 17, []),
        _ => throw new ArgumentOutOfRangeException(nameof(os), os, "no signal facts for this system"),
    };

    /// <summary>Why a loop cannot serve <paramref name="signal"/> here, or null when it can. <paramref name="realtimeMinimum"/>
    /// is SIGRTMIN on Linux (signals 32 up to it are the C library's and the runtime's), 0 elsewhere.</summary>
    public string? WhyRefused(PosixSignal signal, int realtimeMinimum)
    {
        int number = (int)signal; // PosixSignal's named members are negative and portable; raw numbers are the OS's
        if (number is 4 or 5 or 8 or 11 || number == Sigbus || number == Sigsys)
            return $"Signal {number} is a fault the thread that raised it must handle at once (SIGILL, SIGTRAP, SIGFPE, SIGBUS, SIGSEGV, SIGSYS): the runtime turns it into an exception or a crash report.";
        if (number == 9 || number == Sigstop)
            return $"Signal {number} (SIGKILL or SIGSTOP) cannot be caught.";
        if (realtimeMinimum > 0 && number >= 32 && number <= realtimeMinimum)
            return $"Signals 32 to SIGRTMIN ({realtimeMinimum}) belong to the C library and the runtime.";
        if (Array.IndexOf(ThreadLibrary, number) >= 0)
            return $"Signal {number} belongs to the C library's threads.";
        return null;
    }
}
