using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Loop;

/// <summary>What happened to a child: siginfo's <c>si_code</c> for SIGCHLD (the values are Linux's CLD_* numbers).</summary>
public enum ChildStatusCode
{
    /// <summary>Someone else reaped the child before its source could: its status is lost (see <see cref="ChildSource.WasReapedElsewhere"/>).</summary>
    ReapedElsewhere = 0,
    /// <summary>It exited; <see cref="ChildStatus.Status"/> is the exit status (0-255).</summary>
    Exited = 1,
    /// <summary>A signal killed it; <see cref="ChildStatus.Status"/> is the signal.</summary>
    Killed = 2,
    /// <summary>A signal killed it and it dumped core; <see cref="ChildStatus.Status"/> is the signal.</summary>
    Dumped = 3,
    /// <summary>A signal stopped it (only with <see cref="ChildEvents.Stopped"/>); <see cref="ChildStatus.Status"/> is the signal.</summary>
    Stopped = 5,
    /// <summary>SIGCONT resumed it (only with <see cref="ChildEvents.Continued"/>); <see cref="ChildStatus.Status"/> is SIGCONT.</summary>
    Continued = 6,
}

/// <summary>The events a child source reports (sd_event_add_child's WEXITED, WSTOPPED, WCONTINUED). The exit is always
/// among them: it is what ends the source.</summary>
[Flags]
public enum ChildEvents
{
    /// <summary>The exit (WEXITED), or the death by a signal.</summary>
    Exited = 1,
    /// <summary>Stops by a signal (WSTOPPED).</summary>
    Stopped = 2,
    /// <summary>Resumptions by SIGCONT (WCONTINUED).</summary>
    Continued = 4,
}

/// <summary>A child's state change, as the siginfo sd-event hands its child callbacks: what happened (<see cref="Code"/>)
/// and its number (<see cref="Status"/>: the exit status, or the signal). <c>exit(137)</c> and SIGKILL differ here.</summary>
public readonly struct ChildStatus
{
    /// <summary>A state change.</summary>
    public ChildStatus(ChildStatusCode code, int status)
    {
        Code = code;
        Status = status;
    }

    /// <summary>What happened.</summary>
    public ChildStatusCode Code { get; }

    /// <summary>The exit status (<see cref="ChildStatusCode.Exited"/>) or the signal (the others; 0 when reaped elsewhere).</summary>
    public int Status { get; }

    /// <summary>True when the child ended (exited, killed, dumped, or reaped elsewhere), false for a stop or a resumption.</summary>
    public bool HasEnded => Code is not (ChildStatusCode.Stopped or ChildStatusCode.Continued);

    /// <summary>The status as a shell reports it: the exit status, 128 + the signal for a death by signal, -1 when
    /// reaped elsewhere.</summary>
    public int ShellExitCode => Code switch
    {
        ChildStatusCode.Exited => Status,
        ChildStatusCode.ReapedElsewhere => -1,
        _ => 128 + Status,
    };

    /// <summary>The status from a POSIX wait status word (waitpid's; the encoding Linux, macOS and the BSDs share, but for
    /// WIFCONTINUED), or null when it says nothing.</summary>
    internal static ChildStatus? FromWaitStatus(int status) =>
        FromWaitStatus(status, WaitFacts.Here.ContinuedWord, WaitFacts.Here.Sigcont);

    /// <summary>The same with the system's <paramref name="continuedWord"/> and <paramref name="sigcont"/> given (the
    /// decoding of another system's words, for tests).</summary>
    internal static ChildStatus? FromWaitStatus(int status, int continuedWord, int sigcont)
    {
        if (status == continuedWord)
            return new ChildStatus(ChildStatusCode.Continued, sigcont);
        if ((status & 0xFF) == 0x7F)
            return new ChildStatus(ChildStatusCode.Stopped, (status >> 8) & 0xFF);
        if ((status & 0x7F) == 0)
            return new ChildStatus(ChildStatusCode.Exited, (status >> 8) & 0xFF);
        return new ChildStatus((status & 0x80) != 0 ? ChildStatusCode.Dumped : ChildStatusCode.Killed, status & 0x7F);
    }

    /// <inheritdoc />
    public override string ToString() => Code switch
    {
        ChildStatusCode.Exited => $"exited {Status}",
        ChildStatusCode.ReapedElsewhere => "reaped elsewhere",
        ChildStatusCode.Continued => "continued",
        _ => $"{(Code == ChildStatusCode.Dumped ? "killed (core dumped)" : Code == ChildStatusCode.Killed ? "killed" : "stopped")} by signal {Status}",
    };
}

/// <summary>
/// A child process's exit (and, if asked, its stops and resumptions), reaped and reported on the loop thread with
/// a <see cref="ChildStatus"/>, as sd_event_add_child reports the siginfo. On Linux (5.3+) a child watched for its exit
/// only is watched through a pidfd, an ordinary readable descriptor for the poller; elsewhere, or when stops and
/// resumptions are asked for (a pidfd is readable at the exit only; sd-event does the same), through SIGCHLD, with a
/// non-blocking waitpid for each watched child at every delivery. The child must be one this process spawned itself
/// and that nobody else reaps: children started with System.Diagnostics.Process are reaped by the runtime, so use
/// Process.Exited for those. The source disposes itself once it reported the end.
/// </summary>
public sealed unsafe partial class ChildSource : EventSource
{
    private const int P_PIDFD = 3, WEXITED = 4, WNOHANG = 1, WUNTRACED = 2, SIGKILL = 9;

    [LibraryImport("libc", SetLastError = true)] private static partial long syscall(long number, int pid, int flags);
    [LibraryImport("libc", SetLastError = true)] private static partial int waitid(int idType, int id, byte* info, int options);
    [LibraryImport("libc", SetLastError = true)] private static partial int waitpid(int pid, int* status, int options);
    [LibraryImport("libc", SetLastError = true)] private static partial int kill(int pid, int signal);

    private readonly Action<ChildSource, ChildStatus> _callback;
    private int _pidfd = -1; // -1 on the SIGCHLD path (no pidfd, or one the poller refused)
    private readonly int _waitOptions; // waitpid's, on the SIGCHLD path
    private Registration? _registration;
    private ChildStatus _status;
    private bool _reaped;
    private readonly bool _bySignal; // watched through SIGCHLD: no pidfd, or one the poller refused, or stops asked for

    private protected override int PriorityValue { get; set; }
    private protected override string? DescriptionValue { get; set; }
    private protected override long IdValue { get; set; }
    internal override SourceVisit Visit => _bySignal ? SourceVisit.Elsewhere : SourceVisit.WhenReported;
    internal override bool CanWakeLoop => true; // its exit is coming, whatever its state

    internal ChildSource(EventLoop loop, int pid, ChildEvents events, Action<ChildSource, ChildStatus> callback, int priority, string? description)
        : base(loop, priority, SourceState.Oneshot, description ?? $"child {pid}")
    {
        if ((events & ChildEvents.Exited) == 0)
            throw new ArgumentException("A child source always reports the exit, which ends it: include ChildEvents.Exited.", nameof(events));
        ProcessId = pid;
        Events = events;
        _callback = callback;
        _waitOptions = WNOHANG | ((events & ChildEvents.Stopped) != 0 ? WUNTRACED : 0) | ((events & ChildEvents.Continued) != 0 ? WContinued : 0);
        if (OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64)
        {
            const long SYS_pidfd_open = 434; // the same number on x86-64 and arm64 (unified syscall table)
            long fd = syscall(SYS_pidfd_open, pid, 0);
            if (fd < 0 && Errno.Last == Errno.ESRCH)
                throw new PosixException("pidfd_open", Errno.ESRCH, $"pid {pid}: no such process");
            _pidfd = (int)fd;
        }
        if (_pidfd >= 0)
            LibC.SetNonBlockingCloseOnExec(_pidfd);
        if (_pidfd >= 0 && events == ChildEvents.Exited)
        {
            try
            {
                _registration = loop.Poller.Register(_pidfd, (ulong)Id, Interest.Readable, TriggerMode.Oneshot);
                return;
            }
            catch (Exception)
            {
                // A backend that cannot hold the pidfd (select: a descriptor at or above FD_SETSIZE; a full poll set):
                // the SIGCHLD path watches any child, so the source still works; the pidfd, which nothing else would
                // close (the caller gets a source, or an exception), goes.
                LibC.CloseQuietly(_pidfd);
                _pidfd = -1;
            }
        }
        _bySignal = true;
        loop.WatchBySignal(this);
    }

    private static int WContinued => WaitFacts.Here.WContinued;

    /// <summary>The child's process id.</summary>
    public int ProcessId { get; }

    /// <summary>What the source reports.</summary>
    public ChildEvents Events { get; }

    /// <summary>True once the child was reaped: <see cref="Status"/> then says how it ended.</summary>
    public bool HasExited => _reaped;

    /// <summary>The last state change reported: how the child ended once <see cref="HasExited"/>.</summary>
    public ChildStatus Status => _status;

    /// <summary>True when the child was reaped by someone else before this source could (the wait answered ECHILD):
    /// its status is lost, and the callback ran with <see cref="ChildStatusCode.ReapedElsewhere"/>. .NET reaps children
    /// itself when the process is pid 1 (a container) or inherited SIGCHLD as ignored, and any other waitpid(-1) in the
    /// process can take it.</summary>
    public bool WasReapedElsewhere => _reaped && _status.Code == ChildStatusCode.ReapedElsewhere;

    /// <summary>When true, disposing the source before the child ended kills it (SIGKILL) and reaps it, waiting for it
    /// (sd_event_source_set_child_process_own); so does disposing the loop. False by default, as in sd-event.</summary>
    public bool OwnsProcess { get; set; }

    /// <summary>Sends <paramref name="signal"/> to the child (sd_event_source_send_child_signal): through the pidfd where
    /// there is one, so a pid the child left behind and another process took cannot be hit.</summary>
    /// <exception cref="InvalidOperationException">The child was reaped already.</exception>
    /// <exception cref="PosixException">The kernel refused (EPERM, EINVAL).</exception>
    public void SendSignal(int signal)
    {
        ObjectDisposedException.ThrowIf(IsDisposed && !_reaped, this);
        if (_reaped)
            throw new InvalidOperationException($"Child {ProcessId} was reaped: its pid may belong to another process now.");
        if (Signal(signal) != 0)
            throw new PosixException(_pidfd >= 0 ? "pidfd_send_signal" : "kill", Errno.Last, $"child {ProcessId}");
    }

    private int Signal(int signal)
    {
        if (_pidfd < 0)
            return kill(ProcessId, signal);
        const long SYS_pidfd_send_signal = 424; // x86-64 and arm64
        return (int)pidfd_send_signal(SYS_pidfd_send_signal, _pidfd, signal, null, 0);
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long pidfd_send_signal(long number, int pidfd, int signal, void* info, uint flags);

    internal Registration? Registration => _registration;

    /// <summary>Takes the child's next state change, if any: true when there was one (<see cref="Status"/> says which).</summary>
    internal bool Poll()
    {
        if (_reaped)
            return false;
        if (_registration is not null)
        {
            byte* info = stackalloc byte[128]; // siginfo_t: si_code at 8, si_pid at 16, si_status at 24 on Linux LP64
            new Span<byte>(info, 128).Clear();
            if (waitid(P_PIDFD, _pidfd, info, WEXITED | WNOHANG) != 0)
                return LostToAnotherReaper(Errno.Last); // the pidfd stays readable: re-arming it would spin
            if (*(int*)(info + 16) == 0)
                return false; // si_pid 0: not exited yet
            _status = new ChildStatus((ChildStatusCode)(*(int*)(info + 8)), *(int*)(info + 24));
        }
        else
        {
            int status;
            int reaped = waitpid(ProcessId, &status, _waitOptions);
            if (reaped < 0)
                return LostToAnotherReaper(Errno.Last); // else every SIGCHLD would try it again, and none report it
            if (reaped != ProcessId || ChildStatus.FromWaitStatus(status) is not { } change)
                return false;
            _status = change;
        }
        _reaped = _status.HasEnded;
        return true;
    }

    /// <summary>A wait that failed: ECHILD means the child is gone and its status with it (someone else reaped it),
    /// which is reported as such rather than watched forever. EINTR: try at the next wake.</summary>
    private bool LostToAnotherReaper(int errno)
    {
        if (errno == Errno.EINTR)
            return false;
        _status = new ChildStatus(ChildStatusCode.ReapedElsewhere, 0);
        _reaped = true;
        return true;
    }

    internal override void Dispatch()
    {
        if (_registration is not null && !Poll())
        {
            _registration?.Rearm(); // woken, but not exited (a spurious wake): keep watching
            return;
        }
        _callback(this, _status);
    }

    internal override void BeforeDispatch()
    {
        // Stays oneshot: a stop, a resumption or a spurious wake keeps watching.
    }

    internal override void AfterDispatch()
    {
        if (_reaped)
            Dispose();
    }

    private protected override void OnDispose()
    {
        _registration?.Dispose();
        _registration = null;
        if (_bySignal)
            Loop.StopWatchingBySignal(this);
        if (OwnsProcess && !_reaped)
        {
            // sd-event's source_disconnect for an owned child: kill it, then reap it, blocking (SIGKILL is not ignored;
            // a stopped child dies of it too). ECHILD: someone else reaped it meanwhile, nothing to wait for.
            Signal(SIGKILL);
            int status;
            while (waitpid(ProcessId, &status, 0) < 0 && Errno.Last == Errno.EINTR)
            {
            }
            _reaped = true;
        }
        LibC.CloseQuietly(_pidfd);
    }
}

// The SIGCHLD glue of child sources, for systems without pidfd and for children watched for stops and resumptions.
public sealed partial class EventLoop
{
    private readonly List<ChildSource> _childrenBySignal = []; // the children SIGCHLD's deliveries poll
    private SignalSource? _sigchld; // the SIGCHLD path for children, made on first use

    /// <summary>The SIGCHLD path: every delivery polls the children watched that way, each for every state change it
    /// has (a stop and a resumption may both be waiting). The first poll comes in the next iteration, for a child that
    /// changed before its source was made.</summary>
    internal void WatchBySignal(ChildSource child)
    {
        _childrenBySignal.Add(child);
        _sigchld ??= AddSignalSource(PosixSignal.SIGCHLD, (_, _) => PollChildren(), int.MinValue, SourceState.On,
            "SIGCHLD for child sources", loopHelper: true);
        Post(PollChildren, int.MinValue);
    }

    internal void StopWatchingBySignal(ChildSource child) => _childrenBySignal.Remove(child);

    private void PollChildren()
    {
        foreach (var child in _childrenBySignal.ToArray())
            while (!child.IsDisposed && child.State != SourceState.Off && child.Poll())
                Invoke(child, null);
    }
}

/// <summary>The wait(2) facts that differ per system, from each system's headers: WIFCONTINUED's whole status word,
/// SIGCONT's number, and the WCONTINUED option bit.</summary>
internal readonly record struct WaitFacts(int ContinuedWord, int Sigcont, int WContinued)
{
    /// <summary>This process's system.</summary>
    public static readonly WaitFacts Here = For(
        OperatingSystem.IsLinux() ? "linux"
        : OperatingSystem.IsMacOS() || OperatingSystem.IsIOS() || OperatingSystem.IsTvOS() ? "macos"
        : OperatingSystem.IsFreeBSD() ? "freebsd"
        : Platform.Flavor == UnixFlavor.NetBSD ? "netbsd"
        : Platform.IsIllumos ? "illumos"
        : "openbsd"); // and DragonFly, as before (its headers not read here)

    /// <summary>The facts of <paramref name="os"/> (linux, macos, freebsd, netbsd, openbsd, illumos).</summary>
    public static WaitFacts For(string os) => os switch
    {
        // glibc bits/waitstatus.h __W_CONTINUED 0xffff; asm-generic/signal.h SIGCONT 18; linux/wait.h WCONTINUED 8.
        "linux" => new(0xFFFF, 18, 8),
        // xnu bsd/sys/wait.h (e3723e1f): WIFCONTINUED(x) (_WSTATUS(x) == _WSTOPPED && WSTOPSIG(x) == 0x13), so a stop
        // by SIGCONT, 0x137f; WCONTINUED 0x00000010; bsd/sys/signal.h SIGCONT 19.
        "macos" => new(0x137F, 19, 0x10),
        // freebsd-src sys/sys/wait.h (d28066d8): #define WIFCONTINUED(x) (x == 0x13) /* 0x13 == SIGCONT */ — the bare
        // word, whose low seven bits read as a death by signal 19 to a decoder without it; WCONTINUED 4.
        "freebsd" => new(0x13, 19, 4),
        // NetBSD sys/sys/wait.h 1.38 (2022/08/07): _WCONTINUED 0xffffU, WCONTINUED 0x00000010 (8 there is WALLSIG).
        "netbsd" => new(0xFFFF, 19, 0x10),
        // OpenBSD sys/sys/wait.h: _WCONTINUED 0177777 (read); WCONTINUED 8 and SIGCONT 19 as before (not re-read).
        "openbsd" => new(0xFFFF, 19, 8),
        // illumos-gate sys/iso/signal_iso.h SIGCONT 25 (read); WIFCONTINUED's 0177777 and WCONTINUED 0010 as before
        // (usr/src/uts/common/sys/wait.h, not re-read).
        "illumos" => new(0xFFFF, 25, 8),
        _ => throw new ArgumentOutOfRangeException(nameof(os), os, "no wait(2) facts for this system"),
    };
}
