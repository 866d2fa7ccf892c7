//! The ceiling: mappings/bigcommerce-order.yaml and scripts/bigcommerce-order.rhai written by
//! hand against typed serde structs — what a developer would write for this one integration.
//! Used by `benches/flow.rs`; kept in step with the mapping by hand (the composite payload).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Order {
    id: u64,
    customer_id: u64,
    total_inc_tax: String,
    date_created: String,
    status: String,
    #[serde(default)]
    customer_message: Option<String>,
    billing_address: Billing,
    products: Vec<Product>,
}

#[derive(Deserialize)]
struct Billing {
    first_name: Option<String>,
    last_name: String,
    company: Option<String>,
    street_1: Option<String>,
    street_2: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip: Option<String>,
    country: Option<String>,
    phone: Option<String>,
    email: String,
}

#[derive(Deserialize)]
struct Product {
    id: u64,
    order_id: u64,
    sku: String,
    quantity: i64,
    price_inc_tax: String,
    name: Option<String>,
}

#[derive(Serialize)]
pub struct Out {
    order_id: String,
    customer_id: String,
    email: String,
    total: Decimal,
    ordered_on: String,
    account: Account,
    contact: Contact,
    order: SfOrder,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct Account {
    External_Id__c: String,
    Name: String,
    Phone: Option<String>,
    BillingStreet: String,
    BillingCity: Option<String>,
    BillingState: Option<String>,
    BillingPostalCode: Option<String>,
    BillingCountry: Option<String>,
}

#[derive(Serialize, Clone)]
#[allow(non_snake_case)]
struct AccountRef {
    External_Id__c: String,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct Contact {
    External_Email__c: String,
    Email: String,
    FirstName: Option<String>,
    LastName: String,
    Phone: Option<String>,
    MailingCity: Option<String>,
    MailingPostalCode: Option<String>,
    MailingCountry: Option<String>,
    LeadSource: &'static str,
    Account: AccountRef,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct SfOrder {
    External_Id__c: String,
    EffectiveDate: String,
    Status: &'static str,
    Storefront_Status__c: &'static str,
    Pricebook2Id: &'static str,
    Description: String,
    OrderItems: Children,
    Account: AccountRef,
}

/// The child group of a salesforce `composite` payload.
#[derive(Serialize)]
struct Children {
    object: &'static str,
    key: &'static str,
    parent: &'static str,
    records: Vec<Item>,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct PricebookRef {
    SKU__c: String,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct Item {
    External_Id__c: String,
    PricebookEntry: PricebookRef,
    Quantity: i64,
    UnitPrice: Decimal,
    Description: Option<String>,
}

fn status(s: &str) -> &'static str {
    match s {
        "Pending" | "Awaiting Payment" => "Pending",
        "Awaiting Fulfillment" | "Awaiting Shipment" | "Awaiting Pickup" => "Ready",
        "Partially Shipped" => "Shipping",
        "Shipped" => "Shipped",
        "Completed" | "Partially Refunded" => "Completed",
        "Cancelled" | "Declined" => "Cancelled",
        "Refunded" => "Refunded",
        _ => "Pending",
    }
}

/// Bytes of one order in, bytes of the mapped record out.
pub fn transform(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let o: Order = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let date = chrono::DateTime::parse_from_rfc2822(&o.date_created)
        .map_err(|e| e.to_string())?
        .format("%Y-%m-%d")
        .to_string();
    let b = o.billing_address;
    let email = b.email.to_lowercase();
    let key = if o.customer_id == 0 {
        format!("BC-GUEST-{email}")
    } else {
        format!("BC-CUST-{}", o.customer_id)
    };
    let name = match b.company.as_deref() {
        Some(c) if !c.is_empty() => c.to_string(),
        _ => format!("{} {}", b.first_name.as_deref().unwrap_or(""), b.last_name)
            .trim()
            .to_string(),
    };
    let account_ref = AccountRef {
        External_Id__c: key.clone(),
    };
    let items = o
        .products
        .into_iter()
        .map(|p| {
            Ok(Item {
                External_Id__c: format!("BC-ORDER-{}-{}", p.order_id, p.id),
                PricebookEntry: PricebookRef { SKU__c: p.sku },
                Quantity: p.quantity,
                UnitPrice: p
                    .price_inc_tax
                    .parse::<Decimal>()
                    .map_err(|e| e.to_string())?,
                Description: p.name,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let out = Out {
        order_id: o.id.to_string(),
        customer_id: o.customer_id.to_string(),
        email: email.clone(),
        total: o
            .total_inc_tax
            .parse::<Decimal>()
            .map_err(|e| e.to_string())?,
        ordered_on: date.clone(),
        account: Account {
            External_Id__c: key,
            Name: name,
            Phone: b.phone.clone(),
            BillingStreet: format!(
                "{} {}",
                b.street_1.as_deref().unwrap_or(""),
                b.street_2.as_deref().unwrap_or("")
            )
            .trim()
            .to_string(),
            BillingCity: b.city.clone(),
            BillingState: b.state,
            BillingPostalCode: b.zip.clone(),
            BillingCountry: b.country.clone(),
        },
        contact: Contact {
            External_Email__c: email.clone(),
            Email: email,
            FirstName: b.first_name,
            LastName: b.last_name,
            Phone: b.phone,
            MailingCity: b.city,
            MailingPostalCode: b.zip,
            MailingCountry: b.country,
            LeadSource: "Web Store",
            Account: account_ref.clone(),
        },
        order: SfOrder {
            External_Id__c: format!("BC-ORDER-{}", o.id),
            EffectiveDate: date,
            Status: "Draft",
            Storefront_Status__c: status(&o.status),
            Pricebook2Id: "01s000000000000AAA",
            Description: o.customer_message.unwrap_or_default(),
            OrderItems: Children {
                object: "OrderItem",
                key: "External_Id__c",
                parent: "OrderId",
                records: items,
            },
            Account: account_ref,
        },
    };
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}
