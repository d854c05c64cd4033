using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Loop;

/// <summary>
/// The exit of a child process, reaped and reported on the loop thread. On Linux (5.3+) the child is
/// watched through a pidfd, an ordinary readable descriptor for the poller; elsewhere (or when pidfd_open
/// is refused) through SIGCHLD, with a non-blocking waitpid for each watched child at every delivery.
/// The child must be one this process spawned itself and that nobody else reaps: children started with
/// System.Diagnostics.Process are reaped by the runtime, so use Process.Exited for those.
/// </summary>
public sealed unsafe partial class ChildSource : EventSource
{
    private const int P_PIDFD = 3, WEXITED = 4, WNOHANG = 1, CLD_EXITED = 1;

    [LibraryImport("libc", SetLastError = true)] private static partial long syscall(long number, int pid, int flags);
    [LibraryImport("libc", SetLastError = true)] private static partial int waitid(int idType, int id, byte* info, int options);
    [LibraryImport("libc", SetLastError = true)] private static partial int waitpid(int pid, int* status, int options);

    private readonly Action<ChildSource, int> _callback;
    private readonly int _pidfd = -1;
    private Registration? _registration;
    private int _exitCode;
    private bool _reaped;

    internal ChildSource(EventLoop loop, int pid, Action<ChildSource, int> callback, int priority, string? description)
        : base(loop, priority, SourceState.Oneshot, description ?? $"child {pid}")
    {
        ProcessId = pid;
        _callback = callback;
        if (OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64)
        {
            const long SYS_pidfd_open = 434; // the same number on x86-64 and arm64 (unified syscall table)
            long fd = syscall(SYS_pidfd_open, pid, 0);
            if (fd < 0 && Errno.Last == Errno.ESRCH)
                throw new PosixException("pidfd_open", Errno.ESRCH, $"pid {pid}: no such process");
            _pidfd = (int)fd;
        }
        if (_pidfd >= 0)
        {
            LibC.SetNonBlockingCloseOnExec(_pidfd);
            _registration = loop.Poller.Register(_pidfd, (ulong)Id, Interest.Readable, TriggerMode.Oneshot);
        }
        else
        {
            loop.WatchChildrenBySignal();
        }
    }

    /// <summary>The child's process id.</summary>
    public int ProcessId { get; }

    /// <summary>True once the child was reaped: <see cref="ExitCode"/> is then valid.</summary>
    public bool HasExited => _reaped;

    /// <summary>The exit status (0-255), or 128 + the signal number when a signal ended it (as shells report); -1
    /// when <see cref="WasReapedElsewhere"/>.</summary>
    public int ExitCode => _exitCode;

    /// <summary>True when the child was reaped by someone else before this source could (the wait answered ECHILD):
    /// its status is lost, and the callback ran with -1. .NET reaps children itself when the process is pid 1 (a
    /// container) or inherited SIGCHLD as ignored, and any other waitpid(-1) in the process can take it.</summary>
    public bool WasReapedElsewhere { get; private set; }

    internal Registration? Registration => _registration;

    /// <summary>Reaps the child if it has exited; true when it did.</summary>
    internal bool TryReap()
    {
        if (_reaped)
            return true;
        if (_pidfd >= 0)
        {
            byte* info = stackalloc byte[128]; // siginfo_t: si_code at 8, si_status at 24 on Linux LP64
            new Span<byte>(info, 128).Clear();
            if (waitid(P_PIDFD, _pidfd, info, WEXITED | WNOHANG) != 0)
                return LostToAnotherReaper(Errno.Last); // the pidfd stays readable: re-arming it would spin
            if (*(int*)(info + 16) == 0)
                return false; // si_pid 0: not exited yet
            int code = *(int*)(info + 8), status = *(int*)(info + 24);
            _exitCode = code == CLD_EXITED ? status : 128 + status;
        }
        else
        {
            int status;
            int reaped = waitpid(ProcessId, &status, WNOHANG);
            if (reaped < 0)
                return LostToAnotherReaper(Errno.Last); // else every SIGCHLD would try it again, and none report it
            if (reaped != ProcessId)
                return false;
            // POSIX wait status: exited normally when the low 7 bits are 0, code in bits 8-15; else the signal.
            _exitCode = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F);
        }
        _reaped = true;
        return true;
    }

    /// <summary>A wait that failed: ECHILD means the child is gone and its status with it (someone else reaped it),
    /// which is reported as an exit with code -1 rather than watched forever. EINTR: try at the next wake.</summary>
    private bool LostToAnotherReaper(int errno)
    {
        if (errno == Errno.EINTR)
            return false;
        WasReapedElsewhere = true;
        _exitCode = -1;
        _reaped = true;
        return true;
    }

    internal override void Dispatch()
    {
        if (!TryReap())
        {
            _registration?.Rearm(); // woken, but not exited (a stop, or a spurious wake): keep watching
            return;
        }
        _callback(this, _exitCode);
    }

    internal override void BeforeDispatch()
    {
        // Stays oneshot: a wake that was not the exit (a stop, or a spurious wake) keeps watching.
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
        LibC.CloseQuietly(_pidfd);
    }
}

// The SIGCHLD glue of child sources, for systems without pidfd.
public sealed partial class EventLoop
{
    /// <summary>The SIGCHLD path, for systems without pidfd: every delivery makes the watched children pending
    /// (each then tries a non-blocking waitpid).</summary>
    internal void WatchChildrenBySignal() =>
        _sigchld ??= AddSignal(System.Runtime.InteropServices.PosixSignal.SIGCHLD, (_, _) =>
        {
            foreach (var child in _children.ToArray())
                if (!child.IsDisposed && child.TryReap())
                    Invoke(child, null);
        }, priority: int.MinValue, description: "SIGCHLD for child sources");
}
