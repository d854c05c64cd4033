using IoMux.Interop;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace IoMux.AspNetCore;

/// <summary>Switches Kestrel to the IoMux transport.</summary>
public static class IoMuxWebHostBuilderExtensions
{
    /// <summary>Serves Kestrel's endpoints (TCP, Unix-domain sockets, socket-activation handles) through IoMux event
    /// loops: <c>builder.WebHost.UseIoMux(o => o.ThreadCount = 2);</c>. Everything above the transport (HTTP/1.1,
    /// HTTP/2, TLS, WebSockets, the app) is Kestrel's as usual. The options are bound from the configuration
    /// section <see cref="IoMuxTransportOptions.ConfigurationSection"/> first, then <paramref name="configure"/>
    /// runs, and they are validated when the host starts (<see cref="OptionsValidationException"/>).</summary>
    /// <exception cref="PlatformNotSupportedException">Windows (<see cref="PollerFactory.IsSupported"/> is false): a
    /// portable app keeps Kestrel's own transport there.</exception>
    public static IWebHostBuilder UseIoMux(this IWebHostBuilder builder, Action<IoMuxTransportOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        // Here rather than when the host starts: the app that called UseIoMux is named in the stack.
        PlatformSupport.ThrowIfUnsupported("UseIoMux");
        return builder.ConfigureServices(services =>
        {
            services.AddSingleton<IConnectionListenerFactory, IoMuxTransportFactory>();
            var options = services.AddOptions<IoMuxTransportOptions>();
            services.AddSingleton<IConfigureOptions<IoMuxTransportOptions>, IoMuxTransportConfiguration>(); // before configure: code wins
            if (configure is not null)
                options.Configure(configure);
            options.ValidateOnStart();
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<IoMuxTransportOptions>, IoMuxTransportOptionsValidator>());
        });
    }
}
