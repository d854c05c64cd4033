using System.CommandLine;
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
    public static Command Configure(Command command)
    {
        var target = new Argument<string>("HOST:PORT | /path/to/unix/socket")
        {
            Description = "Where to relay each connection: HOST:PORT, [IPv6]:PORT, a Unix socket path, or @abstract.",
        };
        var connectionsMax = new Option<int>("--connections-max", "-c")
        {
            Description = "Set the maximum number of connections to be accepted (default 256). Past it, clients wait in the listen backlog.",
            DefaultValueFactory = _ => ProxyOptions.DefaultConnectionsMax,
        };
        var exitIdle = new Option<string?>("--exit-idle-time")
        {
            Description = "Exit when without a connection for this duration (systemd.time(7) format: 30s, 5min, infinity).",
        };
        var listen = new Option<string[]>("--listen")
        {
            Description = "Extension: listen on ADDRESS (HOST:PORT or a socket path) itself instead of receiving sockets by socket activation (LISTEN_FDS). Repeatable.",
            AllowMultipleArgumentsPerToken = false,
        };
        var drain = new Option<string>("--drain-time")
        {
            Description = "Extension: after SIGTERM/SIGINT, how long active connections may finish before they are closed (default 10s).",
            DefaultValueFactory = _ => "10s",
        };
        var connectTimeout = new Option<string>("--connect-timeout")
        {
            Description = "Extension: how long a backend connect may take before its client is closed (default 30s).",
            DefaultValueFactory = _ => "30s",
        };
        var copyMode = new Option<CopyMode?>("--copy")
        {
            Description = "Extension: splice (zero-copy through a pipe; Linux, the default there) or buffer (read/write).",
        };
        command.Add(target);
        command.Add(connectionsMax);
        command.Add(exitIdle);
        command.Add(listen);
        command.Add(drain);
        command.Add(connectTimeout);
        command.Add(copyMode);
        command.SetAction(result =>
        {
            var logger = new StderrLogger(ProgramName, StderrLogger.LevelFromEnvironment());
            ProxyOptions options;
            try
            {
                int max = result.GetValue(connectionsMax);
                if (max < 1)
                    throw new FormatException("--connections-max must be at least 1.");
                var mode = result.GetValue(copyMode) ?? (OperatingSystem.IsLinux() ? CopyMode.Splice : CopyMode.Buffer);
                if (mode == CopyMode.Splice && !OperatingSystem.IsLinux())
                    throw new FormatException("--copy splice needs Linux.");
                options = new ProxyOptions
                {
                    Target = BackendTarget.Parse(result.GetValue(target)!),
                    ConnectionsMax = max,
                    ExitIdleTime = result.GetValue(exitIdle) is { } idle ? TimeSpans.Parse(idle) : null,
                    DrainTime = TimeSpans.Parse(result.GetValue(drain)!) ?? TimeSpan.MaxValue,
                    ConnectTimeout = TimeSpans.Parse(result.GetValue(connectTimeout)!) ?? TimeSpan.FromDays(1),
                    CopyMode = mode,
                };
            }
            catch (FormatException e)
            {
                logger.LogError("{Message}", e.Message);
                return 2;
            }
            return Run(options, result.GetValue(listen) ?? [], logger);
        });
        return command;
    }

    /// <summary>Takes the listening sockets (activation or <paramref name="listenAddresses"/>), runs the proxy until it
    /// exits, and returns the exit code: 0 after idle exit or a drained stop, 1 when it cannot start.</summary>
    public static int Run(ProxyOptions options, IReadOnlyList<string> listenAddresses, ILogger logger)
    {
        var listeners = new List<int>();
        try
        {
            if (listenAddresses.Count > 0)
                listeners.AddRange(listenAddresses.Select(Listeners.Bind));
            else
            {
                var passed = SocketActivation.TakeListenSockets();
                listeners.AddRange(passed.Select(s => s.Descriptor));
                logger.LogDebug("Received {Sockets} by socket activation.", string.Join(", ", passed.Select(s => $"fd {s.Descriptor} ({s.Name})")));
            }
        }
        catch (Exception e) when (e is SocketActivationException or PosixException or FormatException)
        {
            logger.LogError("{Message}", e.Message);
            foreach (int fd in listeners)
                Interop.LibC.CloseQuietly(fd);
            return 1;
        }
        using var service = ServiceManager.FromEnvironment(logger);
        using var loop = new EventLoop(PollerFactory.Create());
        var server = new ProxyServer(loop, listeners, options, logger) { Service = service };
        service.Watchdog?.Attach(loop);
        service.Ready(server.RelayingStatus);
        using var term = loop.AddSignal(PosixSignal.SIGTERM, (_, _) => server.Stop());
        using var interrupt = loop.AddSignal(PosixSignal.SIGINT, (_, _) => server.Stop());
        int code = loop.Run();
        server.Log.Totals(server.Counters);
        return code;
    }
}
