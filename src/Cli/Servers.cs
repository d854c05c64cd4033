using System.Net;
using System.Runtime.InteropServices;
using IoMux.Web.Echo;
using IoMux.Web.Http;

namespace IoMux.Cli;

/// <summary>The servers of IoMux.Web behind the iomux command: serve, hello, echo.</summary>
internal static class Servers
{
    /// <summary>Runs one server until SIGINT or SIGTERM; 0 after a clean stop, 1 when it cannot start.</summary>
    public static int Run(string kind, string address, int port, int threads, string? directory, bool accessLog = false)
    {
        if (!IPAddress.TryParse(address, out var ip))
        {
            Console.Error.WriteLine($"iomux {kind}: '{address}' is not an IP address");
            return 1;
        }
        var endpoint = new IPEndPoint(ip, port);
        var logger = new IoMux.SocketProxy.StderrLogger($"iomux {kind}", IoMux.SocketProxy.StderrLogger.LevelFromEnvironment());
        var options = new HttpServerOptions { Threads = Math.Max(1, threads), Logger = logger, AccessLog = accessLog ? logger : null };
        IDisposable server;
        IPEndPoint bound;
        using var service = IoMux.SocketProxy.ServiceManager.FromEnvironment(logger);
        try
        {
            switch (kind)
            {
                case "echo":
                    var echo = new EchoService(endpoint, options.Threads, logger: logger);
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
        catch (Exception e) when (e is PosixException or DirectoryNotFoundException)
        {
            Console.Error.WriteLine($"iomux {kind}: {e.Message}");
            return 1;
        }
        using var stop = new ManualResetEventSlim();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; stop.Set(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => { context.Cancel = true; stop.Set(); });
        Console.Error.WriteLine($"iomux {kind}: listening on {bound} with {options.Threads} loop thread(s){(directory is null ? "" : $", serving {Path.GetFullPath(directory)}")}");
        service.Ready($"Listening on {bound} with {options.Threads} loop thread(s)");
        stop.Wait();
        service.Stopping("Stopping: closing the listeners and connections");
        server.Dispose();
        return 0;
    }
}
