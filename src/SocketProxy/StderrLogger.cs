using Microsoft.Extensions.Logging;

namespace IoMux.SocketProxy;

/// <summary>Log lines on stderr, the way systemd's own daemons write them: under the journal (JOURNAL_STREAM set)
/// each line carries its syslog priority as a <c>&lt;N&gt;</c> prefix, otherwise the program's name. The level
/// comes from SYSTEMD_LOG_LEVEL (debug, info, notice, warning, err...), as for systemd-socket-proxyd.
/// Hand-written rather than Microsoft.Extensions.Logging.Console: that one starts a queue thread and costs
/// start-up time, which socket activation makes the first client wait for.</summary>
public sealed class StderrLogger : ILogger
{
    private readonly string _program;
    private readonly bool _journal;
    private readonly TextWriter _output;
    private long _dropped; // lines lost to an unwritable stderr

    /// <summary>A logger for <paramref name="program"/> at <paramref name="minimum"/> writing to <paramref name="output"/> (stderr by default).</summary>
    public StderrLogger(string program, LogLevel minimum, TextWriter? output = null)
    {
        _program = program;
        Minimum = minimum;
        _output = output ?? Console.Error;
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
        lock (_output)
        {
            try
            {
                _output.WriteLine(line);
            }
            catch (Exception e) when (e is IOException or System.ComponentModel.Win32Exception)
            {
                // A line that cannot be written is lost, not fatal: the first write initialises the console, which
                // takes descriptors (a dup of fd 2, a pipe for the runtime's signal thread), and a server held at
                // its descriptor limit must keep serving (docs/reliability/descriptor-limit.md).
                Interlocked.Increment(ref _dropped);
            }
        }
    }


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
