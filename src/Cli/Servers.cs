using System.Net;
using System.Runtime.InteropServices;
using IoMux.SocketProxy;
using IoMux.Web.Echo;
using IoMux.Web.Http;
using IoMux.Interop;

namespace IoMux.Cli;

/// <summary>The servers of IoMux.Web behind the iomux command: serve, hello, echo.</summary>
internal static class Servers
{
    /// <summary>Runs one server until SIGINT or SIGTERM; 0 after a clean stop.</summary>
    /// <exception cref="CommandFailure">It cannot listen on <paramref name="endpoint"/> (EADDRINUSE, EACCES...) or
    /// serve <paramref name="directory"/>.</exception>
    /// <exception cref="BackendUnavailableException">IOMUX_BACKEND names a backend that cannot be used here.</exception>
    public static int Run(string kind, IPEndPoint endpoint, int threads, string? directory, bool accessLog = false)
    {
        // The backend first, so that an unknown IOMUX_BACKEND is the error rather than whatever binding meets.
        using (BackendSelector.Default.Select().Backend) { }
        var logger = new StderrLogger($"iomux {kind}", StderrLogger.LevelFromEnvironment());
        var options = new HttpServerOptions { ThreadCount = threads, Logger = logger, AccessLog = accessLog ? logger : null };
        IDisposable server;
        IPEndPoint bound;
        using var service = IoMux.SocketProxy.ServiceManager.FromEnvironment(logger);
        try
        {
            switch (kind)
            {
                case "echo":
                    var echo = new EchoService(endpoint, options.ThreadCount, logger: logger);
                    (server, bound) = (echo, echo.Endpoint);
                    if (service.Watchdog is { } echoWatchdog)
                        echo.AttachWatchdog(echoWatchdog);
                    break;
                default:
                    var http = kind == "serve" ? HttpServer.StaticFiles(endpoint, directory!, options) : HttpServer.Hello(endpoint, options);
                    (server, bound) = (http, http.Endpoint);
                    if (service.Watchdog is { } httpWatchdog)
                        http.AttachWatchdog(httpWatchdog);
                    break;
            }
        }
        catch (PosixException e) when (e.Operation is "bind" or "listen")
        {
            throw new CommandFailure($"cannot listen on {endpoint}: {UnixCommand.Reason(e.Errno)}", cause: e);
        }
        catch (DirectoryNotFoundException e) // gone since the command line was checked
        {
            throw new CommandFailure($"cannot serve '{directory}': {UnixCommand.Reason(Errno.ENOENT)}", cause: e);
        }
        using var stop = new ManualResetEventSlim();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; stop.Set(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => { context.Cancel = true; stop.Set(); });
        Console.Error.WriteLine($"iomux {kind}: listening on {bound} with {options.ThreadCount} loop thread(s){(directory is null ? "" : $", serving {Path.GetFullPath(directory)}")}");
        service.Ready($"Listening on {bound} with {options.ThreadCount} loop thread(s)");
        stop.Wait();
        service.Stopping("Stopping: closing the listeners and connections");
        server.Dispose();
        return UnixCommand.Success;
    }
}
