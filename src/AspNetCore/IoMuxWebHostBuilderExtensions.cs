using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace IoMux.AspNetCore;

/// <summary>Switches Kestrel to the IoMux transport.</summary>
public static class IoMuxWebHostBuilderExtensions
{
    /// <summary>Serves Kestrel's endpoints (TCP, Unix-domain sockets, socket-activation handles) through IoMux event
    /// loops: <c>builder.WebHost.UseIoMux(o => o.ThreadCount = 2);</c>. Everything above the transport (HTTP/1.1,
    /// HTTP/2, TLS, WebSockets, the app) is Kestrel's as usual.</summary>
    public static IWebHostBuilder UseIoMux(this IWebHostBuilder builder, Action<IoMuxTransportOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.ConfigureServices(services =>
        {
            services.AddSingleton<IConnectionListenerFactory, IoMuxTransportFactory>();
            if (configure is not null)
                services.Configure(configure);
        });
    }
}
