using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using IoMux.Interop;

namespace IoMux.SocketProxy;

/// <summary>Log lines on stderr, the way systemd's own daemons write them: under the journal (JOURNAL_STREAM set)
/// each line carries its syslog priority as a <c>&lt;N&gt;</c> prefix, otherwise the program's name. The level
/// comes from SYSTEMD_LOG_LEVEL (debug, info, notice, warning, err...), as for systemd-socket-proxyd.
/// Hand-written rather than Microsoft.Extensions.Logging.Console: that one starts a queue thread and costs
/// start-up time, which socket activation makes the first client wait for. For the same reason stderr is written
/// with write(2), one call a line in UTF-8 (what the journal reads), not through System.Console, whose loading
/// and set-up cost milliseconds before the first line.</summary>
public sealed partial class StderrLogger : ILogger
{
    private readonly string _program;
    private readonly bool _journal;
    private readonly TextWriter? _output; // null: file descriptor 2
    private static readonly object StderrLock = new();
    private long _dropped; // lines lost to an unwritable stderr

    /// <summary>A logger for <paramref name="program"/> at <paramref name="minimum"/> writing to <paramref name="output"/> (stderr by default).</summary>
    public StderrLogger(string program, LogLevel minimum, TextWriter? output = null)
    {
        _program = program;
        Minimum = minimum;
        _output = output;
        _journal = output is null && Environment.GetEnvironmentVariable("JOURNAL_STREAM") is not null;
    }

    /// <summary>The least severe level written.</summary>
    public LogLevel Minimum { get; }

    /// <summary>Maps SYSTEMD_LOG_LEVEL's names and numbers; info when unset or unknown.</summary>
    public static LogLevel LevelFromEnvironment() =>
        Environment.GetEnvironmentVariable("SYSTEMD_LOG_LEVEL")?.Trim().ToLowerInvariant() switch
        {
            "debug" or "7" => LogLevel.Debug,
            "notice" or "5" or "info" or "6" => LogLevel.Information,
            "warning" or "4" => LogLevel.Warning,
            "err" or "3" => LogLevel.Error,
            "crit" or "alert" or "emerg" or "2" or "1" or "0" => LogLevel.Critical,
            _ => LogLevel.Information,
        };

    /// <inheritdoc />
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    /// <inheritdoc />
    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None && logLevel >= Minimum;

    /// <inheritdoc />
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel))
            return;
        string message = formatter(state, exception);
        if (exception is not null)
            message += $" ({exception.GetType().Name}: {exception.Message})";
        string line = _journal ? $"<{SyslogPriority(logLevel)}>{message}" : $"{_program}: {message}";
        if (_output is null)
        {
            // A line that cannot be written (stderr closed, EPIPE) is lost, not fatal.
            lock (StderrLock)
                if (!WriteStderr(line + "\n"))
                    Interlocked.Increment(ref _dropped);
            return;
        }
        lock (_output)
        {
            try
            {
                _output.WriteLine(line);
            }
            catch (Exception e) when (e is IOException or System.ComponentModel.Win32Exception)
            {
                // A line that cannot be written is lost, not fatal: a server held at its descriptor limit must keep
                // serving (docs/reliability/descriptor-limit.md).
                Interlocked.Increment(ref _dropped);
            }
        }
    }

    /// <summary>Writes <paramref name="text"/> to fd 2, all of it (a line is one write unless the pipe takes part);
    /// waits in poll(2) while a non-blocking stderr is full, as System.Console does (ConsolePal.Unix.Write): no
    /// wake-up until the reader has made room.</summary>
    private static unsafe bool WriteStderr(string text)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(text);
        fixed (byte* start = bytes)
        {
            for (int done = 0; done < bytes.Length;)
            {
                nint written = IoMux.Interop.LibC.write(2, start + done, (nuint)(bytes.Length - done));
                if (written >= 0)
                {
                    done += (int)written;
                    continue;
                }
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EAGAIN)
                {
                    // POLLOUT is 0x4 on every POSIX system (Linux asm-generic/poll.h, the BSDs' and illumos' sys/poll.h).
                    var stderr = new PollFd { Descriptor = 2, Events = 0x4 };
                    poll(&stderr, 1, -1);
                }
                else if (errno != Errno.EINTR)
                    return false;
            }
        }
        return true;
    }


    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Descriptor;
        public short Events;
        public short ReturnedEvents;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int poll(PollFd* fds, nuint count, int timeoutMs);

    /// <summary>Lines that could not be written (stderr closed, or no descriptor free for the console).</summary>
    public long DroppedLines => Interlocked.Read(ref _dropped);

    private static int SyslogPriority(LogLevel level) => level switch
    {
        LogLevel.Trace or LogLevel.Debug => 7,
        LogLevel.Information => 6,
        LogLevel.Warning => 4,
        LogLevel.Error => 3,
        _ => 2,
    };
}
