using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using IoMux.Interop;

namespace IoMux.Loop;

/// <summary>The service side of systemd's notify protocol (sd_notify(3)): datagrams of newline-separated
/// <c>KEY=VALUE</c> lines sent to the AF_UNIX socket named by <c>NOTIFY_SOCKET</c>, a filesystem path or, with a
/// leading <c>@</c>, a Linux abstract name. The rules follow systemd's own client, src/libsystemd/sd-daemon/sd-daemon.c
/// (pid_notify_with_fds_internal): no variable means "not supervised" and nothing is sent; one SOCK_DGRAM
/// socket, close-on-exec; a datagram sent short is an error. Unlike sd_notify, which opens a socket per message,
/// this keeps one open, so a watchdog ping is one sendto and allocates nothing.</summary>
/// <remarks>systemd takes the sender's pid from the datagram's SCM_CREDENTIALS (the kernel adds them when the
/// manager's socket has SO_PASSCRED), so with <c>NotifyAccess=main</c> only the main process may send: the
/// notifier must be used in the process systemd started (not a child), which is how the proxy and the servers
/// use it. Named after sd_notify(3): <c>SystemdNotifier</c>, its name before 1.0, is also the class of
/// Microsoft.Extensions.Hosting.Systemd, which a hosted app imports beside IoMux.Loop.</remarks>
public sealed unsafe partial class SdNotifier : IDisposable
{
    /// <summary>The variable systemd sets to the notify socket's address.</summary>
    public const string SocketVariable = "NOTIFY_SOCKET";

    /// <summary>The variable systemd sets to the watchdog timeout in microseconds (<c>WatchdogSec=</c>).</summary>
    public const string WatchdogUsecVariable = "WATCHDOG_USEC";

    /// <summary>The variable naming the process the watchdog timeout is meant for.</summary>
    public const string WatchdogPidVariable = "WATCHDOG_PID";

    private const int AF_UNIX = 1, SOCK_DGRAM_Linux = 2, MSG_NOSIGNAL_Linux = 0x4000;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int socket(int domain, int type, int protocol);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint sendto(int fd, byte* buffer, nuint length, int flags, byte* address, uint addressLength);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getpid();

    private readonly byte[] _address; // the native sockaddr_un, built once
    private readonly int _sendFlags, _pingFlags;
    private int _fd;
    private long _sent, _failed;

    /// <summary>A notifier for the socket at <paramref name="address"/>: an absolute path, or <c>@name</c> for a
    /// Linux abstract socket (as <c>NOTIFY_SOCKET</c> spells them).</summary>
    /// <exception cref="ArgumentException">Neither an absolute path nor an abstract name, or too long for a
    /// sockaddr_un.</exception>
    /// <exception cref="PosixException">socket(2) failed (EMFILE...).</exception>
    public SdNotifier(string address)
    {
        ArgumentNullException.ThrowIfNull(address);
        // sd-daemon.c accepts exactly these two forms of AF_UNIX address (socket_address_parse_unix); its vsock
        // form (vsock:CID:PORT, for virtual machines) is not supported here.
        if (address.Length < 2 || (address[0] != '/' && address[0] != '@'))
            throw new ArgumentException($"{SocketVariable}='{address}' is neither an absolute path nor an @abstract name.", nameof(address));
        Address = address;
        string native = address[0] == '@' ? "\0" + address[1..] : address;
        try
        {
            var serialized = new UnixDomainSocketEndPoint(native).Serialize();
            _address = serialized.Buffer.Span[..serialized.Size].ToArray();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{SocketVariable}='{address}': {e.Message}", nameof(address), e);
        }
        bool linux = OperatingSystem.IsLinux();
        // MSG_NOSIGNAL as sd_notify sends; a ping adds MSG_DONTWAIT: a full manager queue must cost the ping,
        // never block the loop that sends it. Other messages block as sd_notify's do (READY=1 must not be lost).
        _sendFlags = linux ? MSG_NOSIGNAL_Linux : 0;
        _pingFlags = _sendFlags | LibC.MSG_DONTWAIT;
        // illumos kept SVR4's numbering, where SOCK_DGRAM is 1.
        int type = linux ? SOCK_DGRAM_Linux | LibC.O_CLOEXEC_LINUX /* SOCK_CLOEXEC */ : Platform.IsIllumos ? 1 : 2;
        _fd = socket(AF_UNIX, type, 0);
        if (_fd < 0)
            throw Errno.Fail("socket", "AF_UNIX SOCK_DGRAM for " + SocketVariable);
        // Elsewhere there is no SOCK_CLOEXEC flag: F_SETFD with FD_CLOEXEC.
        if (!linux && LibC.fcntl(_fd, LibC.F_SETFD, LibC.FD_CLOEXEC) < 0)
        {
            var error = Errno.Fail("fcntl", "FD_CLOEXEC");
            LibC.CloseQuietly(_fd);
            throw error;
        }
    }

    /// <summary>A notifier for <c>NOTIFY_SOCKET</c>, or null when the variable is unset or empty (the process is not
    /// supervised by a service manager that listens: sd_notify then sends nothing and returns 0).</summary>
    /// <exception cref="ArgumentException">The variable holds an address that is not AF_UNIX.</exception>
    public static SdNotifier? FromEnvironment()
    {
        var address = Environment.GetEnvironmentVariable(SocketVariable);
        return string.IsNullOrEmpty(address) ? null : new SdNotifier(address);
    }

    /// <summary>The watchdog timeout systemd asked for, or null when there is none for this process, by
    /// sd_watchdog_enabled(3)'s rules: <c>WATCHDOG_USEC</c> must be a positive count of microseconds (not
    /// infinity), and if <c>WATCHDOG_PID</c> is set it must be this process's pid (a child that inherited the
    /// variables must not ping for its parent).</summary>
    /// <exception cref="FormatException">WATCHDOG_USEC or WATCHDOG_PID is set but not a number
    /// (sd_watchdog_enabled returns -EINVAL for both).</exception>
    public static TimeSpan? WatchdogTimeout() =>
        WatchdogTimeout(Environment.GetEnvironmentVariable(WatchdogUsecVariable), Environment.GetEnvironmentVariable(WatchdogPidVariable), getpid());

    /// <summary>The parsing of <see cref="WatchdogTimeout()"/>, on given values.</summary>
    internal static TimeSpan? WatchdogTimeout(string? usec, string? pid, int ownPid)
    {
        if (usec is null)
            return null;
        if (!ulong.TryParse(usec, NumberStyles.None, CultureInfo.InvariantCulture, out ulong microseconds) || microseconds == 0 || microseconds == ulong.MaxValue)
            throw new FormatException($"{WatchdogUsecVariable}='{usec}' is not a positive number of microseconds.");
        if (pid is not null)
        {
            if (!int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int target) || target <= 0)
                throw new FormatException($"{WatchdogPidVariable}='{pid}' is not a process id.");
            if (target != ownPid)
                return null; // meant for another process
        }
        return TimeSpan.FromTicks((long)Math.Min(microseconds, (ulong)(TimeSpan.MaxValue.Ticks / 10)) * 10);
    }

    /// <summary>The address as given (<c>/path</c> or <c>@name</c>).</summary>
    public string Address { get; }

    /// <summary>Datagrams delivered so far.</summary>
    public long Sent => Volatile.Read(ref _sent);

    /// <summary>Sends that failed (a ping that found the manager's queue full, a socket nobody listens on).</summary>
    public long Failed => Volatile.Read(ref _failed);

    /// <summary>Sends <paramref name="state"/> (for example <c>"READY=1\nSTATUS=Listening"</c>).</summary>
    /// <exception cref="PosixException">sendto failed (ECONNREFUSED: nothing is bound there; ENOENT: no such path).</exception>
    public void Notify(string state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var bytes = Encoding.UTF8.GetBytes(state);
        if (!TryNotify(bytes, dontWait: false, out int errno))
            throw new PosixException("sendto", errno, $"{SocketVariable}={Address}");
    }

    /// <summary>Sends <paramref name="state"/>; false with the errno when it could not be sent whole. Never blocks
    /// when <paramref name="dontWait"/> (a full queue is then EAGAIN).</summary>
    /// <remarks><paramref name="errno"/> is this OS's number (EAGAIN is 11 on Linux, 35 on the BSDs); its portable
    /// name is <c>new PosixException("sendto", errno).ErrorName</c> ("EAGAIN"), as <see cref="Notify"/> throws it.</remarks>
    public bool TryNotify(ReadOnlySpan<byte> state, bool dontWait, out int errno)
    {
        ObjectDisposedException.ThrowIf(_fd < 0, this);
        nint sent;
        fixed (byte* message = state)
        fixed (byte* address = _address)
        {
            sent = sendto(_fd, message, (nuint)state.Length, dontWait ? _pingFlags : _sendFlags, address, (uint)_address.Length);
            errno = sent < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
        if (sent == state.Length)
        {
            Interlocked.Increment(ref _sent);
            return true;
        }
        if (sent >= 0)
            errno = Errno.EIO; // as sd-daemon.c: a datagram sent short is an error
        Interlocked.Increment(ref _failed);
        return false;
    }

    /// <summary><c>READY=1</c>, with a <c>STATUS=</c> line when <paramref name="status"/> is given.</summary>
    /// <exception cref="PosixException">sendto failed.</exception>
    public void Ready(string? status = null) => Notify(status is null ? "READY=1" : $"READY=1\nSTATUS={OneLine(status)}");

    /// <summary><c>STATUS=</c><paramref name="status"/>: the line <c>systemctl status</c> shows.</summary>
    /// <exception cref="PosixException">sendto failed.</exception>
    public void Status(string status) => Notify($"STATUS={OneLine(status)}");

    /// <summary><c>STOPPING=1</c> (the service began to shut down), with a <c>STATUS=</c> line when given.</summary>
    /// <exception cref="PosixException">sendto failed.</exception>
    public void Stopping(string? status = null) => Notify(status is null ? "STOPPING=1" : $"STOPPING=1\nSTATUS={OneLine(status)}");

    /// <summary><c>WATCHDOG=1</c>, without blocking and without allocating; false when it could not be sent
    /// (a lost ping is the watchdog's business, not a reason to stop the loop that sends it).</summary>
    public bool Ping() => TryNotify("WATCHDOG=1"u8, dontWait: true, out _);

    // A newline would start another KEY=VALUE assignment inside the status.
    private static string OneLine(string text) => text.ReplaceLineEndings(" ");

    /// <summary>Closes the socket.</summary>
    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
            LibC.CloseQuietly(fd);
    }
}
