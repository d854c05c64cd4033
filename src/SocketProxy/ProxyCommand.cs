using System.CommandLine;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using IoMux.Loop;
using Microsoft.Extensions.Logging;

namespace IoMux.SocketProxy;

/// <summary>The command line of <c>iomux-socket-proxyd</c> (and of <c>iomux proxy</c>): systemd-socket-proxyd's
/// options, plus extensions that are named as such in --help.</summary>
public static class ProxyCommand
{
    /// <summary>The program name used in log lines.</summary>
    public const string ProgramName = "iomux-socket-proxyd";

    /// <summary>Adds the proxy's arguments, options and action to <paramref name="command"/>.</summary>
    public static Command Configure(Command command) =>
        Configure(command, Run);

    /// <summary>The same, with the action's work as a seam: tests read the options a command line gives.</summary>
    internal static Command Configure(Command command, Func<ProxyOptions, IReadOnlyList<string>, int> run)
    {
        // Every value is an Option<string> that our own parsers check while parsing (UnixCommand.CheckedWith says
        // why: an Option<T> over a value type costs JIT time at start) and that ReadOptions converts.
        var target = new Argument<BackendTarget>("HOST:PORT | /path/to/unix/socket")
        {
            Description = "Where to relay each connection: HOST:PORT, [IPv6]:PORT, a Unix socket path, or @abstract.",
        }.ParsedWith(BackendTarget.Parse);
        var connectionsMax = UnixCommand.BoundedInt("--connections-max", "-c", "a connection count", 1, int.MaxValue, ProxyOptions.DefaultConnectionsMax);
        connectionsMax.Description = "Set the maximum number of connections to be accepted. As in systemd-socket-proxyd, a client that finds more than this many open is closed at once (so N+1 are relayed); see --at-limit.";
        var exitIdle = SpanOption("--exit-idle-time", "Exit when without a connection for this duration, counted once a first connection has ended, as systemd-socket-proxyd (systemd.time(7) format: 30s, 5min, infinity).");
        var listen = new Option<string[]>("--listen")
        {
            Description = "Extension: listen on ADDRESS (HOST:PORT or a socket path) itself instead of receiving sockets by socket activation (LISTEN_FDS). Repeatable.",
            AllowMultipleArgumentsPerToken = false,
        };
        listen.Validators.Add(result =>
        {
            foreach (var address in result.GetValueOrDefault<string[]>() ?? [])
            {
                try
                {
                    Listeners.Endpoint(address);
                }
                catch (FormatException e)
                {
                    result.AddError(e.Message);
                }
            }
        });
        var drain = SpanOption("--drain-time", "Extension: after SIGTERM/SIGINT, stop accepting and let active connections finish for up to this long before closing them (default: none, they are closed and the proxy exits at once, as systemd-socket-proxyd).");
        var connectTimeout = SpanOption("--connect-timeout", "Extension: how long a backend connect may take before its client is closed (default 30s).");
        var copyMode = new Option<string>("--copy")
        {
            Description = "Extension: splice (zero-copy through a pipe; Linux, the default there) or buffer (read/write).",
            HelpName = "Buffer|Splice", // what help showed when this was an Option<CopyMode?>
        }.CheckedWith(text => ParseCopyMode(text));
        copyMode.CompletionSources.Add(nameof(CopyMode.Buffer), nameof(CopyMode.Splice));
        var atLimit = new Option<string>("--at-limit")
        {
            Description = "Extension: refuse (systemd's: accept and close past --connections-max, the default) or queue (at exactly --connections-max, leave clients waiting in the listen backlog).",
            HelpName = "refuse|queue",
        }.CheckedWith(text => ParseAtLimit(text));
        command.Add(target);
        command.Add(connectionsMax);
        command.Add(exitIdle);
        command.Add(listen);
        command.Add(drain);
        command.Add(connectTimeout);
        command.Add(copyMode);
        command.Add(atLimit);
        command.SetAction(result => UnknownOptionAsTarget(result, target) is { } option
            ? UnixCommand.ReportUnrecognized(result, option)
            : run(
            ToOptions(result.GetValue(target)!, UnixCommand.GetInt(result, connectionsMax), result.GetValue(exitIdle),
                result.GetValue(drain), result.GetValue(connectTimeout), result.GetValue(copyMode), result.GetValue(atLimit)),
            result.GetValue(listen) ?? []));
        return command;
    }

    /// <summary>An unknown option where the target should be (<c>iomux proxy --bogus</c>): System.CommandLine fills
    /// the empty target with it, so that it got as far as "No listening socket was passed"; getopt_long reports the
    /// option first (iomux-socket-proxyd does through <see cref="Getopt.UnrecognizedWithoutTarget"/>). A target
    /// starting with '-' can still be given after "--".</summary>
    private static string? UnknownOptionAsTarget(ParseResult result, Argument<BackendTarget> target) =>
        result.GetResult(target)?.Tokens is [{ Value: ['-', _, ..] option }]
            && !result.Tokens.Any(t => t.Type == System.CommandLine.Parsing.TokenType.DoubleDash) ? option : null;

    /// <summary>The options from the values given (null: absent), checked already.</summary>
    private static ProxyOptions ToOptions(BackendTarget target, int connectionsMax, string? exitIdle, string? drain,
        string? connectTimeout, string? copy, string? atLimit) => new()
    {
        QueueAtLimit = atLimit is not null && ParseAtLimit(atLimit),
        Target = target,
        ConnectionsMax = connectionsMax,
        ExitIdleTime = Span(exitIdle, fallback: null),
        DrainTime = Span(drain, TimeSpan.Zero) ?? MaxTimer,
        ConnectTimeout = Span(connectTimeout, TimeSpan.FromSeconds(30)) ?? TimeSpan.FromDays(1),
        CopyMode = copy is not null ? ParseCopyMode(copy) : OperatingSystem.IsLinux() ? CopyMode.Splice : CopyMode.Buffer,
    };

    /// <summary>Reads the command lines a service unit gives — the target, and options each with its value, in
    /// <see cref="Getopt"/>'s reading (abbreviations, any order, the last value winning) — without
    /// System.CommandLine: its first use costs some 13 ms (its assembly, types and resources), which under socket
    /// activation the first client waits for. Anything else (--help, --version, an unknown option, a value
    /// starting with -, a value that does not parse) returns false, and System.CommandLine reads
    /// <see cref="Getopt.Canonical"/>'s form of the line, so that every message stays its own. Whatever this
    /// accepts, System.CommandLine reads the same way (ProxyCommandFastPathTests compares the two).</summary>
    internal static bool TryReadCommon(IReadOnlyList<string> args, [NotNullWhen(true)] out ProxyOptions? options, out IReadOnlyList<string> listen)
    {
        options = null;
        listen = [];
        args = Getopt.Canonical(args);
        string? target = null, connectionsMax = null, exitIdle = null, drain = null, connectTimeout = null, copy = null, atLimit = null;
        var listens = new List<string>();
        bool verbose = false;
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg == "--verbose" && !verbose)
            {
                verbose = true;
                // System.CommandLine would take a following true or false as the flag's value.
                if (i + 1 < args.Count && bool.TryParse(args[i + 1], out _))
                    return false;
                continue;
            }
            if (arg.Length == 0)
                return false;
            // '@' starts an abstract socket target, never a response file (UnixCommand.Parsing): read here as well.
            if (arg[0] != '-')
            {
                if (target is not null)
                    return false;
                target = arg;
                continue;
            }
            string name = arg, value;
            int equals = arg.IndexOf('=');
            if (equals > 0 && arg.StartsWith("--", StringComparison.Ordinal))
            {
                name = arg[..equals];
                value = arg[(equals + 1)..];
            }
            else if (i + 1 < args.Count)
                value = args[++i];
            else
                return false;
            if (value.Length == 0 || value[0] == '-')
                return false;
            if (name == "--listen")
            {
                listens.Add(value);
                continue;
            }
            // Getopt.Canonical kept only the last of each; a name it did not know is System.CommandLine's to report.
            switch (name)
            {
                case "--connections-max": connectionsMax = value; break;
                case "--exit-idle-time": exitIdle = value; break;
                case "--drain-time": drain = value; break;
                case "--connect-timeout": connectTimeout = value; break;
                case "--copy": copy = value; break;
                case "--at-limit": atLimit = value; break;
                default: return false;
            }
        }
        if (target is null)
            return false;
        int connections = ProxyOptions.DefaultConnectionsMax;
        if (connectionsMax is not null && !UnixCommand.TryParseBounded(connectionsMax, 1, int.MaxValue, out connections))
            return false;
        try
        {
            foreach (var address in listens)
                Listeners.Endpoint(address);
            options = ToOptions(BackendTarget.Parse(target), connections, exitIdle, drain, connectTimeout, copy, atLimit);
        }
        catch (FormatException)
        {
            return false;
        }
        listen = listens;
        return true;
    }

    /// <summary>True for queue, false for refuse.</summary>
    private static bool ParseAtLimit(string text) => text.ToLowerInvariant() switch
    {
        "refuse" => false,
        "queue" => true,
        _ => throw new FormatException($"'{text}' is neither refuse nor queue"),
    };

    private static CopyMode ParseCopyMode(string text) => text.ToLowerInvariant() switch
    {
        "splice" when !OperatingSystem.IsLinux() => throw new FormatException("splice needs Linux; give buffer"),
        "splice" => CopyMode.Splice,
        "buffer" => CopyMode.Buffer,
        _ => throw new FormatException($"'{text}' is neither splice nor buffer"),
    };

    /// <summary>The loop's timers count nanoseconds in a long (292 years): a span beyond this is "never".</summary>
    private static readonly TimeSpan MaxTimer = TimeSpan.FromDays(100 * 365.25);

    /// <summary>An option holding a systemd.time(7) span. Not a DefaultValueFactory: help would show the default
    /// instead of the 10s the description gives.</summary>
    private static Option<string> SpanOption(string name, string description) =>
        new Option<string>(name) { Description = description }.CheckedWith(text => TimeSpans.Parse(text));

    /// <summary>The span given, null ("never") for infinity or one too long for a loop timer,
    /// <paramref name="fallback"/> when the option is absent.</summary>
    private static TimeSpan? Span(string? text, TimeSpan? fallback) =>
        text is null ? fallback
            : TimeSpans.Parse(text) is { } span && span <= MaxTimer ? span
            : null;

    private static string Describe(SocketActivation.ListenSocket[] sockets)
    {
        var text = new System.Text.StringBuilder();
        foreach (var socket in sockets)
            text.Append(text.Length == 0 ? "" : ", ").Append("fd ").Append(socket.Descriptor).Append(" (").Append(socket.Name).Append(')');
        return text.ToString();
    }

    /// <summary><see cref="Run(ProxyOptions, IReadOnlyList{string}, ILogger)"/> logging on stderr at SYSTEMD_LOG_LEVEL.</summary>
    internal static int Run(ProxyOptions options, IReadOnlyList<string> listenAddresses) =>
        Run(options, listenAddresses, new StderrLogger(ProgramName, StderrLogger.LevelFromEnvironment()));

    /// <summary>Takes the listening sockets (activation or <paramref name="listenAddresses"/>), runs the proxy until it
    /// exits, and returns the exit code: 0 after idle exit or a drained stop, 1 when it cannot start.</summary>
    /// <exception cref="BackendUnavailableException">IOMUX_BACKEND names a backend that cannot be used here.</exception>
    public static int Run(ProxyOptions options, IReadOnlyList<string> listenAddresses, ILogger logger)
    {
        // The backend first: an unknown IOMUX_BACKEND is reported before any socket is taken or bound.
        using var loop = new EventLoop(PollerFactory.Create());
        loop.Poller.UseServerSpin(); // relay the next packet without a wake-up (Poller.SpinBeforeSleep)
        var listeners = new List<int>();
        try
        {
            foreach (var address in listenAddresses)
            {
                try
                {
                    listeners.Add(Listeners.Bind(address));
                }
                catch (PosixException e)
                {
                    throw new CommandFailure($"cannot listen on {address}: {UnixCommand.Reason(e.Errno)}", cause: e);
                }
            }
            if (listenAddresses.Count == 0)
            {
                // Loops, not LINQ: Select over the ListenSocket struct is JIT-compiled at start (an instantiation
                // ReadyToRun cannot precompile), and the debug line is only built when it is written.
                var passed = SocketActivation.TakeListenSockets();
                foreach (var socket in passed)
                    listeners.Add(socket.Descriptor);
                if (logger.IsEnabled(LogLevel.Debug))
                    logger.LogDebug("Received {Sockets} by socket activation.", Describe(passed));
            }
        }
        catch (Exception e) when (e is SocketActivationException or CommandFailure or FormatException)
        {
            logger.LogError("{Message}", e.Message);
            foreach (int fd in listeners)
                Interop.LibC.CloseQuietly(fd);
            return UnixCommand.RuntimeError;
        }
        using var service = ServiceManager.FromEnvironment(logger);
        var server = new ProxyServer(loop, listeners, options, logger) { Service = service };
        service.Watchdog?.Attach(loop);
        service.Ready(server.RelayingStatus);
        using var term = loop.AddSignal(PosixSignal.SIGTERM, (_, _) => server.Stop());
        using var interrupt = loop.AddSignal(PosixSignal.SIGINT, (_, _) => server.Stop());
        // Meters the program deferred (MeterPublication) are made once the first connection has long been relayed.
        using var meters = loop.AddTimer(TimeSpan.FromSeconds(1), _ => MeterPublication.PublishDeferred(), description: "deferred meters");
        int code = loop.Run();
        server.Log.Totals(server.Counters);
        return code;
    }
}
