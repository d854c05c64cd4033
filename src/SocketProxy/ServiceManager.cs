using IoMux.Loop;
using Microsoft.Extensions.Logging;

namespace IoMux.SocketProxy;

/// <summary>What the proxy and the iomux servers tell a supervising service manager (systemd's <c>Type=notify</c>
/// and <c>WatchdogSec=</c>): READY=1 once listening, STATUS= lines, STOPPING=1 when the shutdown begins, and the
/// watchdog that the loops ping themselves. Without <c>NOTIFY_SOCKET</c> every call does nothing, as sd_notify does.
/// Best effort: a message that cannot be sent is logged (once), never a reason to stop serving.</summary>
internal sealed class ServiceManager : IDisposable
{
    private readonly SdNotifier? _notifier;
    private readonly ILogger _logger;
    private bool _failureLogged;

    private ServiceManager(SdNotifier? notifier, LoopWatchdog? watchdog, ILogger logger)
    {
        _notifier = notifier;
        Watchdog = watchdog;
        _logger = logger;
    }

    /// <summary>From NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. A malformed variable is logged and leaves that
    /// part off (sd_notify and sd_watchdog_enabled report it as an error the daemon may ignore).</summary>
    public static ServiceManager FromEnvironment(ILogger logger)
    {
        SdNotifier? notifier = null;
        LoopWatchdog? watchdog = null;
        try
        {
            notifier = SdNotifier.FromEnvironment();
            watchdog = LoopWatchdog.FromEnvironment(notifier);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or PosixException)
        {
            logger.LogWarning("Service manager notification off: {Message}", e.Message);
        }
        if (notifier is not null)
            logger.LogDebug("Notifying {Socket}; watchdog {Watchdog}.", notifier.Address,
                watchdog is null ? "off" : $"every {watchdog.Timeout.TotalMilliseconds / 2} ms");
        return new ServiceManager(notifier, watchdog, logger);
    }

    /// <summary>The watchdog the service's loops must attach to, or null when the manager asked for none.</summary>
    public LoopWatchdog? Watchdog { get; }

    /// <summary>READY=1 with a status line.</summary>
    public void Ready(string status) => Send(notifier => notifier.Ready(status));

    /// <summary>A status line.</summary>
    public void Status(string status) => Send(notifier => notifier.Status(status));

    /// <summary>STOPPING=1 with a status line.</summary>
    public void Stopping(string status) => Send(notifier => notifier.Stopping(status));

    private void Send(Action<SdNotifier> send)
    {
        if (_notifier is null)
            return;
        try
        {
            send(_notifier);
        }
        catch (PosixException e) when (!_failureLogged)
        {
            _failureLogged = true;
            _logger.LogWarning("Cannot notify the service manager: {Message} (logged once).", e.Message);
        }
        catch (PosixException)
        {
        }
    }

    /// <summary>Closes the notify socket.</summary>
    public void Dispose() => _notifier?.Dispose();
}
